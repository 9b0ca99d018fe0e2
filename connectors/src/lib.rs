pub mod file;
pub mod kafka;
pub mod simulator;
