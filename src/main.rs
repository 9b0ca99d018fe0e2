//! The `prognos` binary: parse the command line, set up logging, run the command.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let cli = prognos::cli::Cli::parse();
    prognos::cli::init_logging(&cli.log);
    prognos::cli::dispatch(cli)
}
