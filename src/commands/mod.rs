//! One module per subcommand.

pub mod check;
pub mod controller;
pub mod features;
pub mod history;
pub mod replay;
pub mod run;
pub mod simulate;
pub mod train;
pub mod users;
pub mod worker;
