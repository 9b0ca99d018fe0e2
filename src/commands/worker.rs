//! `prognos worker`: one process of the cluster (see [`crate::worker`]). Its
//! arguments in, [`worker::serve`] called.

use crate::cli::{ConfigArg, DataDirArg};
use crate::worker::{self, WorkerSettings};
use clap::Args;

/// Arguments of `prognos worker`.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Configuration (organizations, schemas, thresholds).
    #[command(flatten)]
    pub config: ConfigArg,
    /// Where this process keeps its checkpoints (`worker-<process>/`) and finds models.
    #[command(flatten)]
    pub data_dir: DataDirArg,
    /// Kafka brokers, `host:port[,host:port...]`.
    #[arg(long, env = "PROGNOS_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub brokers: String,
    /// The SCADA topic (key = org id; JSON rows).
    #[arg(long, default_value = "prognos.scada")]
    pub topic: String,
    /// Where alert records go (key = org id; JSON).
    #[arg(long, default_value = "prognos.alerts")]
    pub alerts_topic: String,
    /// Also write dead letters (bad or late rows, with the reason) to this topic.
    #[arg(long)]
    pub dead_letters_topic: Option<String>,
    /// Also write every prediction to this topic (one record per scored row).
    #[arg(long)]
    pub predictions_topic: Option<String>,
    /// Model activations, threshold changes and org configurations published by
    /// the controller (compacted).
    #[arg(long, default_value = "prognos.control")]
    pub control_topic: String,
    /// Process what the topic holds now, then stop (a batch run; without it the
    /// worker follows the topic until Ctrl-C or SIGTERM).
    #[arg(long)]
    pub until_end: bool,
    /// How often to checkpoint (ms).
    #[arg(long, default_value_t = 1000)]
    pub checkpoint_ms: u64,
    /// Ignore any checkpoint and start every partition from the beginning (records
    /// already on the alerts topic are still not written again).
    #[arg(long)]
    pub from_beginning: bool,
    /// Fetch model versions from this controller's API (`http://host:port`),
    /// checked against their SHA-256 and kept in `<data-dir>/models`. Without it
    /// `<data-dir>/models` must already hold every version the control topic
    /// activates (a volume shared with the controller).
    #[arg(long, env = "PROGNOS_CONTROLLER_URL", value_name = "URL")]
    pub controller_url: Option<String>,
    /// The token the controller's `/api/cluster` routes want (the controller's
    /// own `PROGNOS_CLUSTER_TOKEN`).
    #[arg(
        long,
        env = "PROGNOS_CLUSTER_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub cluster_token: Option<String>,
    /// Serve `/metrics` (Prometheus), `/healthz` and `/readyz` here (e.g.
    /// `0.0.0.0:9100` in a pod); none when absent.
    #[arg(long, env = "PROGNOS_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// timely's own arguments after `--`: `-w THREADS -n PROCESSES -p INDEX -h HOSTFILE`.
    #[arg(last = true, value_name = "TIMELY ARGS")]
    pub timely: Vec<String>,
}

/// Run a worker process until the input ends (`--until-end`) or Ctrl-C/SIGTERM.
pub fn run(args: WorkerArgs) -> anyhow::Result<()> {
    worker::serve(WorkerSettings {
        config: args.config.config,
        data_dir: args.data_dir.data_dir,
        brokers: args.brokers,
        topic: args.topic,
        alerts_topic: args.alerts_topic,
        dead_letters_topic: args.dead_letters_topic,
        predictions_topic: args.predictions_topic,
        control_topic: args.control_topic,
        until_end: args.until_end,
        checkpoint_ms: args.checkpoint_ms,
        from_beginning: args.from_beginning,
        controller_url: args.controller_url,
        cluster_token: args.cluster_token,
        metrics_listen: args.metrics_listen,
        timely: args.timely,
    })
}
