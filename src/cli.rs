//! The command line: `prognos <subcommand>`. Shared flags (`--config`,
//! `--data-dir`, `--listen`) mean the same in every subcommand and can also be set
//! through `PROGNOS_CONFIG`, `PROGNOS_DATA_DIR` and `PROGNOS_LISTEN`.

use crate::commands;
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

/// prognos: streaming predictive maintenance for heat-treatment furnaces.
#[derive(Debug, Parser)]
#[command(name = "prognos", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Logging options.
    #[command(flatten)]
    pub log: LogArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Logging options (every subcommand).
#[derive(Debug, Args)]
pub struct LogArgs {
    /// Log filter, e.g. `info`, `prognos=debug` (env RUST_LOG takes precedence).
    #[arg(long, global = true, default_value = "info", value_name = "FILTER")]
    pub log_level: String,
    /// Log lines as JSON instead of text.
    #[arg(long, global = true)]
    pub log_json: bool,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the embedded default: the furnace simulator feeding the pipeline, with
    /// the HTTP API (health, metrics) on --listen. Runs until Ctrl-C.
    Run(commands::run::RunArgs),
    /// Generate furnace SCADA rows for several organizations, each in its own schema,
    /// plus the ground-truth failure events.
    Simulate(commands::simulate::SimulateArgs),
    /// Validate a configuration and the ONNX Runtime installation, and summarise both.
    Check(commands::check::CheckArgs),
    /// Compute the feature table of history files (JSONL/CSV) with the live
    /// dataflow and write one Parquet file per organization (training data).
    Features(commands::features::FeaturesArgs),
    /// Train an organization's model version from raw history (features with the
    /// live dataflow, then ml/train.py), register it, and deploy it when it beats
    /// the active version on the same validation rows (or with --force).
    Train(commands::train::TrainArgs),
    /// List, show, activate and roll back model versions.
    Models(commands::train::ModelsArgs),
    /// Run history files through the whole dataflow (features, models, rules,
    /// dedup) and print event recall, lead time and false alarms per org and
    /// component against known failures: the backtest before trusting a model.
    Replay(commands::replay::ReplayArgs),
    /// One process of the cluster: read the SCADA topic's partitions of its timely
    /// workers from Kafka, run the dataflow, write alerts to the alerts topic;
    /// checkpoints make a restart lose and repeat nothing. timely's own arguments
    /// (-w -n -p -h) go after `--`.
    Worker(commands::worker::WorkerArgs),
    /// The cluster's control plane: the store and the API, training and the model
    /// registry; consumes the alerts topic into the store and publishes model
    /// activations on the control topic for the workers.
    Controller(commands::controller::ControllerArgs),
    /// Add, list, remove API users and set their passwords (while the service is stopped).
    Users(commands::users::UsersArgs),
    /// Import historian exports into an organization's history, show what is
    /// stored (the rows training reads), and keep its work orders (failure labels).
    History(commands::history::HistoryArgs),
}

/// `--config FILE` (env `PROGNOS_CONFIG`).
#[derive(Debug, Clone, Args)]
pub struct ConfigArg {
    /// TOML configuration file; the built-in example when absent. Every key can be
    /// overridden with PROGNOS_<SECTION>__<KEY> environment variables.
    #[arg(long, env = "PROGNOS_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// `--data-dir DIR` (env `PROGNOS_DATA_DIR`).
#[derive(Debug, Clone, Args)]
pub struct DataDirArg {
    /// Directory for the store, models and checkpoints.
    #[arg(
        long,
        env = "PROGNOS_DATA_DIR",
        value_name = "DIR",
        default_value = "./data",
        global = true
    )]
    pub data_dir: PathBuf,
}

/// `--listen ADDR` (env `PROGNOS_LISTEN`).
#[derive(Debug, Clone, Args)]
pub struct ListenArg {
    /// Address of the HTTP/WebSocket API.
    #[arg(
        long,
        env = "PROGNOS_LISTEN",
        value_name = "ADDR",
        default_value = "127.0.0.1:8080"
    )]
    pub listen: SocketAddr,
}

/// Set up `tracing` for the process.
pub fn init_logging(args: &LogArgs) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&args.log_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    if args.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Run the chosen subcommand.
pub fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run(a) => commands::run::run(a),
        Command::Simulate(a) => commands::simulate::run(a),
        Command::Check(a) => commands::check::run(a),
        Command::Features(a) => commands::features::run(a),
        Command::Train(a) => commands::train::run_train(a),
        Command::Models(a) => commands::train::run_models(a),
        Command::Replay(a) => commands::replay::run(a),
        Command::Users(a) => commands::users::run(a),
        Command::Worker(a) => commands::worker::run(a),
        Command::Controller(a) => commands::controller::run(a),
        Command::History(a) => commands::history::run(a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    /// Every flag of every subcommand carries help text.
    #[test]
    fn every_flag_is_documented() {
        let root = Cli::command();
        for sub in root.get_subcommands() {
            assert!(sub.get_about().is_some(), "{} lacks about", sub.get_name());
            for arg in sub.get_arguments() {
                if arg.get_id() == "help" || arg.get_id() == "version" {
                    continue;
                }
                assert!(
                    arg.get_help().is_some(),
                    "{} --{} lacks help",
                    sub.get_name(),
                    arg.get_id()
                );
            }
        }
    }

    #[test]
    fn shared_names_are_the_same_everywhere() {
        let c = Cli::try_parse_from([
            "prognos",
            "run",
            "--config",
            "c.toml",
            "--data-dir",
            "/tmp/d",
            "--listen",
            "127.0.0.1:9999",
        ])
        .unwrap();
        match c.command {
            Command::Run(a) => {
                assert_eq!(a.config.config.unwrap(), PathBuf::from("c.toml"));
                assert_eq!(a.data_dir.data_dir, PathBuf::from("/tmp/d"));
                assert_eq!(a.listen.listen.port(), 9999);
            }
            _ => panic!("parsed the wrong subcommand"),
        }
        assert!(Cli::try_parse_from(["prognos", "run", "--listen", "not-an-addr"]).is_err());
    }
}
