//! `prognos run`: the embedded default (see [`crate::embedded`]). Its
//! arguments in, [`embedded::serve`] called.

use crate::cli::{ConfigArg, DataDirArg, ListenArg};
use crate::embedded::{self, RunSettings};
use clap::Args;
use std::path::PathBuf;

/// Arguments of `prognos run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Configuration (organizations, schemas, thresholds, simulator).
    #[command(flatten)]
    pub config: ConfigArg,
    /// Where the store, models and checkpoints live.
    #[command(flatten)]
    pub data_dir: DataDirArg,
    /// API address.
    #[command(flatten)]
    pub listen: ListenArg,
    /// Simulator speed factor (event time / wall time); `[simulator].speed` when absent.
    #[arg(long)]
    pub speed: Option<f64>,
    /// Stop after this many simulated hours; run until Ctrl-C when absent.
    #[arg(long)]
    pub hours: Option<f64>,
    /// Also write every alert record as JSON lines to FILE (`-` = stdout).
    #[arg(long, value_name = "FILE")]
    pub alerts_out: Option<PathBuf>,
    /// Write every prediction (one per scored row) as JSON lines to FILE (`-` = stdout).
    #[arg(long, value_name = "FILE")]
    pub predictions_out: Option<PathBuf>,
    /// Do not train first models in the background (orgs without one stay on rules).
    #[arg(long)]
    pub no_first_models: bool,
}

/// Start the embedded default and block until Ctrl-C (or `--hours` of event time).
pub fn run(args: RunArgs) -> anyhow::Result<()> {
    embedded::serve(RunSettings {
        config: args.config.config,
        data_dir: args.data_dir.data_dir,
        listen: args.listen.listen,
        speed: args.speed,
        hours: args.hours,
        alerts_out: args.alerts_out,
        predictions_out: args.predictions_out,
        no_first_models: args.no_first_models,
    })
}
