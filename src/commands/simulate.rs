//! `prognos simulate`: furnace SCADA rows for several organizations, each in its
//! own schema, plus ground-truth failure events.

use crate::cli::ConfigArg;
use crate::settings;
pub use crate::simulation::schemas_from_config;
use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use prognos_connectors::simulator::{self, OrgSchema, OutputFormat, SimConfig, Speed};
use std::path::PathBuf;

/// Arguments of `prognos simulate`.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Number of organizations (the first three are acme-heat, borealis-forge and
    /// cobalt-thermal, each with its own column names and time format).
    #[arg(long, default_value_t = 3)]
    pub orgs: usize,
    /// Furnaces per organization.
    #[arg(long, default_value_t = 4)]
    pub machines: u32,
    /// Simulated duration in hours.
    #[arg(long, default_value_t = 24.0)]
    pub hours: f64,
    /// Sampling interval of every furnace in milliseconds (1000 to 3600000).
    #[arg(long, default_value_t = simulator::DEFAULT_INTERVAL_MS)]
    pub interval_ms: i64,
    /// Seed: the same seed and options give byte-identical output.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Failures per machine per simulated day (Poisson).
    #[arg(long, default_value_t = simulator::DEFAULT_FAILURE_RATE_PER_MACHINE_DAY)]
    pub failure_rate: f64,
    /// Fraction of precursor episodes that recover without a failure.
    #[arg(long, default_value_t = simulator::DEFAULT_NEAR_MISS_RATIO)]
    pub near_miss_ratio: f64,
    /// Event time of the first row (RFC 3339).
    #[arg(long, default_value = "2024-01-01T00:00:00Z")]
    pub start: String,
    /// Pacing: `max` (as fast as possible), `realtime`, or a factor such as `60` or `x60`.
    #[arg(long, default_value = "max", value_parser = parse_speed)]
    pub speed: Speed,
    /// Write `<org>.jsonl` (or `.csv`) per org plus `events.jsonl` into DIR;
    /// without it, JSONL rows of all orgs go to stdout with an `org` field.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Row format of the files in --out.
    #[arg(long, value_enum, default_value_t = Format::Jsonl)]
    pub format: Format,
    /// Produce the rows to Kafka instead (brokers `host:port,...`): key = org,
    /// partition = hash of (org, machine) so each furnace keeps its order.
    #[arg(long, value_name = "BROKERS", conflicts_with = "out")]
    pub kafka: Option<String>,
    /// Topic for --kafka.
    #[arg(long, default_value = "prognos.scada", requires = "kafka")]
    pub topic: String,
    /// Partitions to create the topic with when it does not exist (--kafka).
    #[arg(long, default_value_t = 4, requires = "kafka")]
    pub partitions: i32,
    /// Take the organizations and their column names from this configuration
    /// instead of the built-in three schemas.
    #[command(flatten)]
    pub config: ConfigArg,
}

/// Row format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One JSON object per line.
    Jsonl,
    /// Comma-separated values with a header line.
    Csv,
}

fn parse_speed(s: &str) -> Result<Speed, String> {
    match s {
        "max" => Ok(Speed::Max),
        "realtime" => Ok(Speed::Realtime),
        _ => {
            let f: f64 = s
                .trim_start_matches('x')
                .parse()
                .map_err(|_| format!("`{s}` is not max, realtime or a factor like 60"))?;
            if f.is_finite() && f > 0.0 {
                Ok(Speed::Factor(f))
            } else {
                Err(format!("speed factor must be > 0, got {s}"))
            }
        }
    }
}

/// Run the simulation.
pub fn run(args: SimulateArgs) -> anyhow::Result<()> {
    if !(args.hours.is_finite() && args.hours > 0.0) {
        bail!("--hours must be > 0, got {}", args.hours);
    }
    let start_ms = prognos_dataflows::time::parse_rfc3339_ms(&args.start)
        .with_context(|| format!("--start `{}` is not an RFC 3339 time", args.start))?;
    let schemas = match &args.config.config {
        Some(path) => {
            let cfg = settings::load(Some(path))?.config;
            let mut s = schemas_from_config(&cfg)?;
            if args.orgs < s.len() {
                s.truncate(args.orgs);
            }
            s
        }
        None => OrgSchema::builtin(args.orgs),
    };
    if schemas.is_empty() {
        bail!("--orgs must be at least 1");
    }
    let cfg = SimConfig {
        machines_per_org: args.machines,
        start_ms,
        duration_ms: (args.hours * 3_600_000.0).round() as i64,
        interval_ms: args.interval_ms,
        seed: args.seed,
        failure_rate_per_machine_day: args.failure_rate,
        near_miss_ratio: args.near_miss_ratio,
    };
    cfg.validate()?;
    let expected = cfg.steps() * cfg.machines_per_org as u64 * schemas.len() as u64;
    let fmt = match args.format {
        Format::Jsonl => OutputFormat::Jsonl,
        Format::Csv => OutputFormat::Csv,
    };
    let bar = ProgressBar::new(expected);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {wide_bar} {human_pos}/{human_len} rows  {per_sec}  eta {eta}",
        )
        .expect("valid template"),
    );
    let progress = |rows: u64| bar.set_position(rows);
    let t0 = std::time::Instant::now();
    if let Some(brokers) = &args.kafka {
        bar.finish_and_clear();
        return to_kafka(&cfg, &schemas, brokers, &args, t0);
    }
    match &args.out {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create --out directory {}", dir.display()))?;
            let summary = simulator::run_to_dir(&cfg, &schemas, dir, fmt, args.speed, &progress)?;
            bar.finish_and_clear();
            let secs = t0.elapsed().as_secs_f64();
            for o in &summary.orgs {
                tracing::info!(
                    org = %o.org_id,
                    rows = o.rows,
                    failures = o.events.iter().sum::<u64>(),
                    file = %dir.join(format!("{}.{}", o.org_id, fmt.extension())).display(),
                    "wrote rows"
                );
            }
            tracing::info!(
                rows = summary.rows_total(),
                failures = summary.events_total(),
                events = %dir.join("events.jsonl").display(),
                seconds = format!("{secs:.2}"),
                rows_per_s = format!("{:.0}", summary.rows_total() as f64 / secs.max(1e-9)),
                "simulation written"
            );
        }
        None => {
            if fmt == OutputFormat::Csv {
                bail!("--format csv needs --out DIR (stdout carries JSONL of all orgs)");
            }
            let stdout = std::io::stdout();
            let mut lock = stdout.lock();
            let summary =
                simulator::run_to_writer(&cfg, &schemas, &mut lock, args.speed, &progress)?;
            bar.finish_and_clear();
            tracing::info!(rows = summary.rows_total(), "simulation written to stdout");
        }
    }
    Ok(())
}

/// `simulate --kafka`: every row to the topic, keyed by org, then flush.
fn to_kafka(
    cfg: &SimConfig,
    schemas: &[OrgSchema],
    brokers: &str,
    args: &SimulateArgs,
    t0: std::time::Instant,
) -> anyhow::Result<()> {
    use prognos_connectors::kafka::{KafkaClient, RecordProducer, admin};
    let client = KafkaClient::new(brokers);
    let wait = std::time::Duration::from_secs(60);
    admin::create_topic(&client, &args.topic, args.partitions, false, wait)?;
    let n = admin::partitions(&admin::reader(&client)?, &args.topic)?;
    let producer = RecordProducer::new(&client, &args.topic)?;
    let ids: Vec<Vec<String>> = schemas
        .iter()
        .enumerate()
        .map(|(i, s)| simulator::OrgStream::new(cfg, i, s).map(|st| st.machine_ids().to_vec()))
        .collect::<Result<_, _>>()?;
    let mut emit = |org: usize, machine: usize, row: &[u8]| {
        let org_id = schemas[org].org_id.as_bytes();
        let p = prognos_connectors::kafka::machine_partition(
            &schemas[org].org_id,
            &ids[org][machine],
            n,
        );
        producer.send_to(Some(p), org_id, row, 0);
        producer.service();
    };
    let rows = simulator::run_to_records(cfg, schemas, args.speed, &mut emit)?;
    producer.flush(std::time::Duration::from_secs(120))?;
    let secs = t0.elapsed().as_secs_f64();
    tracing::info!(
        rows,
        topic = %args.topic,
        partitions = n,
        seconds = format!("{secs:.2}"),
        rows_per_s = format!("{:.0}", rows as f64 / secs.max(1e-9)),
        "simulation produced to Kafka"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speed_parses() {
        assert_eq!(parse_speed("max").unwrap(), Speed::Max);
        assert_eq!(parse_speed("realtime").unwrap(), Speed::Realtime);
        assert_eq!(parse_speed("x60").unwrap(), Speed::Factor(60.0));
        assert_eq!(parse_speed("2.5").unwrap(), Speed::Factor(2.5));
        assert!(parse_speed("0").is_err());
        assert!(parse_speed("fast").is_err());
    }

    #[test]
    fn example_config_gives_the_builtin_schemas() {
        let cfg = settings::load_with_env(None, Vec::new()).unwrap().config;
        let from_cfg = schemas_from_config(&cfg).unwrap();
        assert_eq!(from_cfg, OrgSchema::builtin(3));
    }
}
