//! The `prognos` binary: parse the command line, set up logging, run the command.

use clap::Parser;

/// mimalloc instead of glibc malloc: rows are allocated on one worker thread and
/// freed on another (the exchange by machine), which glibc serialises on arena
/// locks (`benches/README.md`, "In-process replay").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let cli = prognos::cli::Cli::parse();
    prognos::cli::init_logging(&cli.log);
    prognos::cli::dispatch(cli)
}
