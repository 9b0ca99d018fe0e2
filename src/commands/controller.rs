//! `prognos controller`: the cluster's control plane (see [`crate::controller`]).
//! Its arguments in, [`controller::serve`] called.

use crate::cli::{ConfigArg, DataDirArg, ListenArg};
use crate::controller::{self, ControllerSettings};
use clap::Args;

/// Arguments of `prognos controller`.
#[derive(Debug, Args)]
pub struct ControllerArgs {
    /// Configuration (organizations, thresholds, training).
    #[command(flatten)]
    pub config: ConfigArg,
    /// Where the store and the models live.
    #[command(flatten)]
    pub data_dir: DataDirArg,
    /// API address.
    #[command(flatten)]
    pub listen: ListenArg,
    /// Kafka brokers, `host:port[,host:port...]`.
    #[arg(long, env = "PROGNOS_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub brokers: String,
    /// The topic the workers write alerts to.
    #[arg(long, default_value = "prognos.alerts")]
    pub alerts_topic: String,
    /// The compacted topic model activations are published on.
    #[arg(long, default_value = "prognos.control")]
    pub control_topic: String,
}

/// Run until Ctrl-C or SIGTERM.
pub fn run(args: ControllerArgs) -> anyhow::Result<()> {
    controller::serve(ControllerSettings {
        config: args.config.config,
        data_dir: args.data_dir.data_dir,
        listen: args.listen.listen,
        brokers: args.brokers,
        alerts_topic: args.alerts_topic,
        control_topic: args.control_topic,
    })
}
