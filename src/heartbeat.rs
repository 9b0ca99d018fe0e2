//! A cluster worker's heartbeat: every [`HEARTBEAT_EVERY_MS`] the process
//! posts its [`WorkerReport`] (state, rows per org, model cache, the model
//! loads since the last acknowledged report) to the controller's
//! `POST /api/cluster/heartbeat`, whose health routes aggregate the workers and
//! name the stale and missing ones. A failed post is retried at the next beat
//! with the loads it did not deliver; the pipeline never waits for it.

use crate::status::{HEARTBEAT_EVERY_MS, PipelineStatus, WorkerReport};
use prognos_dataflows::models::CacheStats;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Where and as whom a worker reports.
pub struct Heartbeat {
    /// The controller's API (`http://host:port`).
    pub url: String,
    /// The cluster token.
    pub token: String,
    /// The process's index, the cluster's processes, the process's threads.
    pub process: usize,
    /// How many processes the cluster has.
    pub processes: usize,
    /// Timely worker threads in this process.
    pub threads: usize,
    /// The process's pipeline (its publish loop updates it).
    pub pipeline: Arc<PipelineStatus>,
    /// The model cache's counters and load log.
    pub cache: Arc<Mutex<BTreeMap<usize, CacheStats>>>,
    /// Set once the dataflow runs.
    pub ready: Arc<AtomicBool>,
    /// Set on shutdown.
    pub stop: Arc<AtomicBool>,
}

impl Heartbeat {
    /// The report to send now: the loads after `acked`.
    pub fn report(&self, acked: u64) -> WorkerReport {
        let state = if self.stop.load(Ordering::Acquire) {
            "stopping"
        } else if self.ready.load(Ordering::Acquire) {
            "running"
        } else {
            "starting"
        };
        let loads = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .flat_map(|c| c.load_log.iter())
            .filter(|r| r.seq > acked)
            .cloned()
            .collect();
        WorkerReport {
            process: self.process,
            processes: self.processes,
            threads: self.threads,
            state: state.into(),
            pipeline: self.pipeline.snapshot(),
            loads,
        }
    }

    /// Post reports until `stop`, in a thread of its own.
    pub fn start(self) -> anyhow::Result<std::thread::JoinHandle<()>> {
        let http = reqwest::blocking::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(5))
            .build()?;
        let url = format!("{}/api/cluster/heartbeat", self.url.trim_end_matches('/'));
        Ok(std::thread::Builder::new()
            .name("heartbeat".into())
            .spawn(move || {
                let mut acked = 0u64;
                let mut failing = false;
                while !self.stop.load(Ordering::Acquire) {
                    let report = self.report(acked);
                    let sent = report.loads.iter().map(|r| r.seq).max().unwrap_or(acked);
                    match http
                        .post(&url)
                        .bearer_auth(&self.token)
                        .json(&report)
                        .send()
                        .and_then(|r| r.error_for_status())
                    {
                        Ok(_) => {
                            acked = sent;
                            if failing {
                                tracing::info!(controller = %self.url, "heartbeats reach the controller again");
                            }
                            failing = false;
                        }
                        Err(e) => {
                            if !failing {
                                tracing::warn!(controller = %self.url, error = %e,
                                    "heartbeat not delivered (retrying every beat; the controller's health routes will call this worker stale)");
                            }
                            failing = true;
                        }
                    }
                    // Sleep in small steps so a stop is not held up.
                    let mut slept = 0;
                    while slept < HEARTBEAT_EVERY_MS && !self.stop.load(Ordering::Acquire) {
                        std::thread::sleep(Duration::from_millis(100));
                        slept += 100;
                    }
                }
            })?)
    }
}
