//! One module per subcommand.

pub mod check;
pub mod features;
pub mod run;
pub mod simulate;
pub mod train;
