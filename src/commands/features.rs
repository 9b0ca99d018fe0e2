//! `prognos features`: run the live feature dataflow over history files and write
//! one Parquet feature table per org (the training data; the same code scores
//! live rows, so training and serving see identical features).

use crate::cli::ConfigArg;
use crate::settings;
use clap::Args;
use prognos_dataflows::stats::outcome;
use std::path::PathBuf;
use std::time::Instant;

pub use crate::training::features::{FeaturesSummary, compute_with};

/// Arguments of `prognos features`.
#[derive(Debug, Args)]
pub struct FeaturesArgs {
    /// Configuration (schemas and feature definitions).
    #[command(flatten)]
    pub config: ConfigArg,
    /// Input files (JSONL or CSV), one partition each, read in order.
    #[arg(long, required = true, num_args = 1.., value_name = "FILES")]
    pub input: Vec<PathBuf>,
    /// Organization of every input; by default each file's stem (`acme-heat.jsonl`).
    #[arg(long)]
    pub org: Option<String>,
    /// Output directory: `<org>.parquet` per org and `dead_letters.jsonl`.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Timely worker threads.
    #[arg(short = 'w', long, default_value_t = 1)]
    pub workers: usize,
    /// Compute but do not write the tables (to measure the dataflow alone).
    #[arg(long)]
    pub discard: bool,
}

/// Run the command.
pub fn run(args: FeaturesArgs) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let summary = compute(&args)?;
    let secs = t0.elapsed().as_secs_f64();
    let total: u64 = summary
        .stats
        .iter()
        .filter(|((_, o), _)| o == outcome::FEATURED)
        .map(|(_, n)| n)
        .sum();
    for (org, n) in &summary.rows {
        tracing::info!(org = %org, rows = n, file = %args.out.join(format!("{org}.parquet")).display(), "feature table written");
    }
    for ((org, what), n) in &summary.stats {
        if what != outcome::MAPPED && what != outcome::FEATURED {
            tracing::warn!(org = %org, outcome = %what, rows = n, "rows not featured");
        }
    }
    tracing::info!(
        rows = total,
        dead_letters = summary.dead_letters,
        seconds = format!("{secs:.2}"),
        rows_per_s = format!("{:.0}", total as f64 / secs.max(1e-9)),
        "features done"
    );
    Ok(())
}

/// Run the dataflow over the inputs and write the tables; returns what was written.
pub fn compute(args: &FeaturesArgs) -> anyhow::Result<FeaturesSummary> {
    let config = settings::load(args.config.config.as_deref())?.config;
    compute_with(
        &config,
        &args.input,
        args.org.as_deref(),
        &args.out,
        args.workers,
        args.discard,
    )
}
