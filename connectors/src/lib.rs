pub mod file;
pub mod simulator;
