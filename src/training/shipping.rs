//! Model versions shipped from the controller to the workers over HTTP.
//!
//! The controller serves every registered version (`GET
//! /api/cluster/models/{org}/{version}`: a [`Manifest`] of its files with their
//! sizes and SHA-256; `…/files/{name}`: one file) to callers that present the
//! cluster token (env `PROGNOS_CLUSTER_TOKEN`, shared by the controller and the
//! workers). A worker started with `--controller-url` keeps the versions it
//! fetched in `<data-dir>/models/<org>/<version>/` with the manifest they were
//! checked against ([`MANIFEST_FILE`]); a restart checks the files again and
//! fetches only what is missing or does not match.
//!
//! A worker that cannot fetch a version it needs waits — the dataflow does not
//! score that org's rows with any other version meanwhile — and says so: a
//! warning per attempt, `prognos_model_fetch_waiting` (versions waited for) and
//! `prognos_model_fetches_total{outcome}`. A version the controller does not
//! have (404) is final: the org runs on its rules, as for a model that fails its
//! load check.

use prognos_dataflows::models::cache::ModelSource;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The manifest a fetched version keeps beside its files.
pub const MANIFEST_FILE: &str = ".manifest.json";

/// One file of a version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestFile {
    /// File name (no directory).
    pub name: String,
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256, lower-case hex.
    pub sha256: String,
}

/// What a version is made of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Org.
    pub organization_id: String,
    /// Version.
    pub version: String,
    /// Its files, by name.
    pub files: Vec<ManifestFile>,
}

/// SHA-256 of a file, lower-case hex, and its size.
pub fn sha256_file(path: &Path) -> std::io::Result<(String, u64)> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let n = std::io::copy(&mut f, &mut h)?;
    Ok((format!("{:x}", h.finalize()), n))
}

/// Whether `name` is a plain file name a manifest may list.
pub fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// The manifest of the version in `dir`: its plain files (not sub-folders),
/// sorted by name.
pub fn manifest_of(dir: &Path, org: &str, version: &str) -> std::io::Result<Manifest> {
    let mut files = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if !e.file_type()?.is_file() || !plain_name(&name) {
            continue;
        }
        let (sha256, bytes) = sha256_file(&e.path())?;
        files.push(ManifestFile {
            name,
            bytes,
            sha256,
        });
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Manifest {
        organization_id: org.to_string(),
        version: version.to_string(),
        files,
    })
}

/// Whether `dir` holds exactly what its kept manifest lists, for `org`/`version`.
fn verified(dir: &Path, org: &str, version: &str) -> bool {
    let Ok(text) = std::fs::read(dir.join(MANIFEST_FILE)) else {
        return false;
    };
    let Ok(m) = serde_json::from_slice::<Manifest>(&text) else {
        return false;
    };
    m.organization_id == org
        && m.version == version
        && !m.files.is_empty()
        && m.files.iter().all(|f| {
            sha256_file(&dir.join(&f.name)).is_ok_and(|(sha, n)| sha == f.sha256 && n == f.bytes)
        })
}

/// Why one fetch attempt failed.
#[derive(Debug)]
enum Attempt {
    /// Try again later (unreachable, refused token, 5xx, checksum mismatch).
    Retry(String),
    /// The controller does not have the version.
    Gone(String),
}

/// Fetch counters of a worker.
#[derive(Clone)]
pub struct FetchMetrics {
    /// Versions being waited for now.
    pub waiting: prometheus::IntGauge,
    /// Fetches by outcome: `fetched`, `cached` (already on disk and checked),
    /// `retry` (an attempt failed; waiting), `missing` (the controller has no
    /// such version).
    pub fetches: prometheus::IntCounterVec,
}

impl FetchMetrics {
    /// Registered into `r`.
    pub fn register(r: &prometheus::Registry) -> prometheus::Result<FetchMetrics> {
        let waiting = prometheus::IntGauge::new(
            "prognos_model_fetch_waiting",
            "Model versions this worker needs and is waiting to fetch from the controller",
        )?;
        let fetches = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "prognos_model_fetches_total",
                "Model version fetches from the controller, by outcome",
            ),
            &["outcome"],
        )?;
        r.register(Box::new(waiting.clone()))?;
        r.register(Box::new(fetches.clone()))?;
        Ok(FetchMetrics { waiting, fetches })
    }
}

/// Versions fetched from the controller's API (a worker's [`ModelSource`]).
pub struct HttpModelSource {
    base: String,
    token: String,
    http: reqwest::blocking::Client,
    metrics: FetchMetrics,
    stop: std::sync::Arc<AtomicBool>,
    /// One fetch at a time (the dataflow's workers and the prefetch share it).
    lock: Mutex<()>,
    /// Longest pause between attempts.
    max_backoff: Duration,
}

impl HttpModelSource {
    /// Fetching from `base` (`http://controller:8080`) with the cluster token.
    /// While waiting, a requested stop ends the process (see [`ModelSource::ensure`]).
    pub fn new(
        base: &str,
        token: &str,
        metrics: FetchMetrics,
        stop: std::sync::Arc<AtomicBool>,
    ) -> Result<HttpModelSource, reqwest::Error> {
        Ok(HttpModelSource {
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
            http: reqwest::blocking::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .timeout(Duration::from_secs(120))
                .build()?,
            metrics,
            stop,
            lock: Mutex::new(()),
            max_backoff: Duration::from_secs(10),
        })
    }

    /// `base` with these path segments (percent-encoded).
    fn url(&self, segments: &[&str]) -> Result<String, Attempt> {
        let bad = |e: String| Attempt::Gone(format!("controller URL {}: {e}", self.base));
        let mut u = reqwest::Url::parse(&self.base).map_err(|e| bad(e.to_string()))?;
        u.path_segments_mut()
            .map_err(|()| bad("cannot take a path".into()))?
            .pop_if_empty()
            .extend(segments);
        Ok(u.to_string())
    }

    fn get(&self, url: &str) -> Result<reqwest::blocking::Response, Attempt> {
        let r = self
            .http
            .get(url)
            .bearer_auth(&self.token)
            .send()
            .map_err(|e| Attempt::Retry(format!("GET {url}: {e}")))?;
        match r.status().as_u16() {
            200 => Ok(r),
            404 => Err(Attempt::Gone(format!(
                "GET {url}: 404 (the controller has no such version)"
            ))),
            401 => Err(Attempt::Retry(format!(
                "GET {url}: 401 (the controller refused the cluster token: PROGNOS_CLUSTER_TOKEN must be the controller's)"
            ))),
            s => Err(Attempt::Retry(format!("GET {url}: HTTP {s}"))),
        }
    }

    /// One attempt: manifest, every file checked, then the folder moved in place.
    fn fetch(&self, org: &str, version: &str, dir: &Path) -> Result<(), Attempt> {
        let base = self.url(&["api", "cluster", "models", org, version])?;
        let m: Manifest = self
            .get(&base)?
            .json()
            .map_err(|e| Attempt::Retry(format!("GET {base}: unreadable manifest: {e}")))?;
        if m.organization_id != org || m.version != version || m.files.is_empty() {
            return Err(Attempt::Retry(format!(
                "GET {base}: the manifest is for {}/{} with {} files",
                m.organization_id,
                m.version,
                m.files.len()
            )));
        }
        let parent = dir.parent().unwrap_or(dir);
        let io = |what: &str, p: &Path, e: std::io::Error| {
            Attempt::Retry(format!("{what} {}: {e}", p.display()))
        };
        std::fs::create_dir_all(parent).map_err(|e| io("cannot create", parent, e))?;
        let tmp = parent.join(format!(".fetch-{version}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(|e| io("cannot create", &tmp, e))?;
        for f in &m.files {
            if !plain_name(&f.name) {
                return Err(Attempt::Retry(format!(
                    "GET {base}: the manifest names {:?}",
                    f.name
                )));
            }
            let url = self.url(&["api", "cluster", "models", org, version, "files", &f.name])?;
            let body = self
                .get(&url)?
                .bytes()
                .map_err(|e| Attempt::Retry(format!("GET {url}: {e}")))?;
            let sha = format!("{:x}", Sha256::digest(&body));
            if sha != f.sha256 || body.len() as u64 != f.bytes {
                return Err(Attempt::Retry(format!(
                    "GET {url}: checksum mismatch ({} bytes, sha256 {sha}; the manifest says {} bytes, {})",
                    body.len(),
                    f.bytes,
                    f.sha256
                )));
            }
            let p = tmp.join(&f.name);
            write_synced(&p, &body).map_err(|e| io("cannot write", &p, e))?;
        }
        let mp = tmp.join(MANIFEST_FILE);
        let text = serde_json::to_vec_pretty(&m).map_err(|e| Attempt::Retry(e.to_string()))?;
        write_synced(&mp, &text).map_err(|e| io("cannot write", &mp, e))?;
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(|e| io("cannot replace", dir, e))?;
        }
        std::fs::rename(&tmp, dir).map_err(|e| io("cannot move into place", dir, e))?;
        crate::training::history::sync_dir(dir);
        Ok(())
    }
}

fn write_synced(p: &PathBuf, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(p)?;
    f.write_all(bytes)?;
    f.sync_all()
}

impl ModelSource for HttpModelSource {
    /// Checked files on disk are used as they are; otherwise the version is
    /// fetched, retrying with a backoff (0.5 s doubling up to 10 s) for as long
    /// as it takes. A stop requested while waiting ends the process (exit code
    /// 75) without a final checkpoint: nothing was scored with another version,
    /// and the restart resumes from the last checkpoint.
    fn ensure(&self, org: &str, version: &str, dir: &Path) -> Result<(), String> {
        let _one = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        if verified(dir, org, version) {
            self.metrics.fetches.with_label_values(&["cached"]).inc();
            return Ok(());
        }
        let mut pause = Duration::from_millis(500);
        let mut attempt = 0u32;
        let result = loop {
            attempt += 1;
            match self.fetch(org, version, dir) {
                Ok(()) => {
                    self.metrics.fetches.with_label_values(&["fetched"]).inc();
                    tracing::info!(
                        org,
                        version,
                        attempt,
                        "model version fetched from the controller"
                    );
                    break Ok(());
                }
                Err(Attempt::Gone(e)) => {
                    self.metrics.fetches.with_label_values(&["missing"]).inc();
                    tracing::error!(org, version, error = %e, "the controller does not have this model version; the org runs on its rules");
                    break Err(e);
                }
                Err(Attempt::Retry(e)) => {
                    self.metrics.fetches.with_label_values(&["retry"]).inc();
                    if attempt == 1 {
                        self.metrics.waiting.inc();
                    }
                    tracing::warn!(org, version, attempt, error = %e, retry_in_ms = pause.as_millis() as u64,
                        "waiting for a model version from the controller; the org's rows are not scored meanwhile");
                    let until = std::time::Instant::now() + pause;
                    while std::time::Instant::now() < until {
                        if self.stop.load(Ordering::Acquire) {
                            tracing::error!(
                                org,
                                version,
                                "stopping while waiting for a model version: exiting without a final checkpoint (the restart resumes from the last one)"
                            );
                            std::process::exit(75);
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    pause = (pause * 2).min(self.max_backoff);
                }
            }
        };
        if attempt > 1 {
            self.metrics.waiting.dec();
        }
        result
    }
}
