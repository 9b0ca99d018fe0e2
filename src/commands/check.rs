//! `prognos check`: validate the configuration and the ONNX Runtime installation.

use crate::cli::ConfigArg;
use crate::{onnx_runtime, settings};
use clap::Args;

/// Arguments of `prognos check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The configuration to check.
    #[command(flatten)]
    pub config: ConfigArg,
    /// Check only the configuration, not the ONNX Runtime library.
    #[arg(long)]
    pub config_only: bool,
}

/// Run the check, printing a summary; an error names the failing key or file.
pub fn run(args: CheckArgs) -> anyhow::Result<()> {
    let loaded = settings::load(args.config.config.as_deref())?;
    println!("config: {} is valid", loaded.origin);
    for name in &loaded.overrides {
        println!("  override from environment: {name}");
    }
    for (id, org) in &loaded.config.orgs {
        println!(
            "  org {id} ({}): {} signals, {} features, {} rules, {} failure signals, failure threshold {}",
            org.name,
            org.signals.len(),
            org.feature_names().len(),
            org.rules.len(),
            org.failure_signals.len(),
            org.prediction.failure_threshold,
        );
    }
    if !args.config_only {
        let rt = onnx_runtime::init()?;
        println!(
            "onnxruntime: loaded {} (found via {})",
            rt.located.path.display(),
            rt.located.how
        );
        println!("  {}", onnx_runtime::build_info());
    }
    Ok(())
}
