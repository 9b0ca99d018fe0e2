//! The model cache: loaded versions shared by every worker of a process, least
//! recently used evicted first, bounded by count and by the memory the loaded
//! versions hold. That memory is measured when a version loads: the growth of
//! the C heap (where ONNX Runtime allocates; Rust allocations of the service go
//! to its own allocator) while its three sessions are built and checked against
//! the test vector, and never less than its ONNX files' size. A version that
//! failed to load or check is remembered as unusable and not retried on every
//! batch.
//!
//! Workers score a shared version one batch at a time (ONNX Runtime's `Run` is
//! not safe to call concurrently on one session), each under the version's lock.
//! Loads are serialized so each measurement sees one load; a worker that needs a
//! version another worker is loading waits for that load instead of loading it
//! twice.

use super::runner::{LoadedModel, ModelError};
use ort::environment::Environment;
use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

/// Cache limits, for the whole process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLimits {
    /// Most versions held at once.
    pub max_models: usize,
    /// Most bytes of memory held by loaded versions (one larger version is still
    /// held alone).
    pub max_bytes: u64,
}

impl Default for CacheLimits {
    fn default() -> Self {
        CacheLimits {
            max_models: crate::config::DEFAULT_MODEL_CACHE_MODELS,
            max_bytes: crate::config::DEFAULT_MODEL_CACHE_MIB << 20,
        }
    }
}

impl CacheLimits {
    /// The limits the configuration sets.
    pub fn from_config(r: &crate::config::RuntimeConfig) -> CacheLimits {
        CacheLimits {
            max_models: r.model_cache_models,
            max_bytes: r.model_cache_mib.saturating_mul(1 << 20),
        }
    }
}

/// One load of a version (the seed's MODEL_LOAD), for the audit log.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelLoadRecord {
    /// Increasing within a cache, from 1.
    pub seq: u64,
    /// Org.
    pub org: String,
    /// Version.
    pub version: String,
    /// Whether it loaded and passed its check.
    pub ok: bool,
    /// Why not.
    pub error: Option<String>,
    /// Milliseconds the fetch, load and check took.
    pub load_ms: f64,
    /// Memory charged to it (0 when it failed).
    pub bytes: u64,
    /// When it ended (ms since the epoch, wall clock).
    pub at_ms: i64,
}

/// Load records kept for readers (the audit log reads them every second or so).
pub const LOAD_LOG_LEN: usize = 256;

/// Cache counters, for metrics and health (serialized in a cluster worker's
/// heartbeat to the controller).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct CacheStats {
    /// Lookups served from memory.
    pub hits: u64,
    /// Lookups that loaded (preloads at start are not lookups).
    pub misses: u64,
    /// Versions loaded at start, before any row asked for them.
    pub preloads: u64,
    /// Versions evicted.
    pub evictions: u64,
    /// Seconds spent loading and checking.
    pub load_seconds: f64,
    /// Bytes of memory held now.
    pub bytes: u64,
    /// Versions held now.
    pub models: usize,
    /// The (org, version) pairs held now, most recently used first.
    pub loaded: Vec<(String, String)>,
    /// The (org, version) pairs that failed their load-time check, with the reason.
    pub failed: Vec<(String, String, String)>,
    /// The latest loads, oldest first (at most [`LOAD_LOG_LEN`]).
    pub load_log: Vec<ModelLoadRecord>,
}

impl CacheStats {
    /// Hits over lookups; None before the first lookup.
    pub fn hit_rate(&self) -> Option<f64> {
        let n = self.hits + self.misses;
        (n > 0).then(|| self.hits as f64 / n as f64)
    }
}

/// Where version directories live: `<root>/<org>/<version>/`.
pub type ModelRoot = Arc<PathBuf>;

/// A loaded version, shared by the workers (scored under its lock).
pub type SharedModel = Arc<Mutex<LoadedModel>>;

/// Where a version's files come from when its directory is not there yet (a
/// cluster's worker fetches them from the controller). The cache calls
/// [`ModelSource::ensure`] on every miss, before loading.
pub trait ModelSource: Send + Sync {
    /// Make `dir` hold the version's files, waiting as long as the source is
    /// unreachable (never scoring with another version meanwhile). An error is
    /// final: the version is remembered as unusable and its org runs on the rules.
    fn ensure(&self, org: &str, version: &str, dir: &std::path::Path) -> Result<(), String>;
}

/// What a loaded version is charged: its measured memory, at least its files.
pub type Charge = fn(measured: Option<u64>, model: &LoadedModel) -> u64;

fn measured_or_files(measured: Option<u64>, model: &LoadedModel) -> u64 {
    measured.unwrap_or(0).max(model.bytes)
}

/// Bytes the C heap holds now (glibc's `mallinfo2`: in use in the arenas plus
/// mmapped chunks); None where that is not available.
pub fn c_heap_bytes() -> Option<u64> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 only reads the allocator's counters.
        let m = unsafe { libc::mallinfo2() };
        Some((m.uordblks + m.hblkhd) as u64)
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        None
    }
}

type Key = (String, String);

struct Entry {
    key: Key,
    model: SharedModel,
    bytes: u64,
}

#[derive(Default)]
struct State {
    entries: Vec<Entry>,
    failed: HashMap<Key, ModelError>,
    loading: HashSet<Key>,
    counters: CacheStats,
    log: VecDeque<ModelLoadRecord>,
    seq: u64,
}

/// Loaded versions keyed by (org, version), shared by the workers of a process.
pub struct ModelCache {
    env: Environment,
    root: ModelRoot,
    limits: CacheLimits,
    source: Option<Arc<dyn ModelSource>>,
    charge: Charge,
    state: Mutex<State>,
    loaded: Condvar,
    load_lock: Mutex<()>,
}

/// A cache made once per process by whichever worker needs it first.
pub type CacheSlot = Arc<OnceLock<Arc<ModelCache>>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ModelCache {
    /// An empty cache loading from `root`.
    pub fn new(env: Environment, root: ModelRoot, limits: CacheLimits) -> ModelCache {
        ModelCache {
            env,
            root,
            limits,
            source: None,
            charge: measured_or_files,
            state: Mutex::new(State::default()),
            loaded: Condvar::new(),
            load_lock: Mutex::new(()),
        }
    }

    /// Fetch missing versions from `source` before loading them.
    pub fn with_source(mut self, source: Option<Arc<dyn ModelSource>>) -> ModelCache {
        self.source = source;
        self
    }

    /// Charge loaded versions by `charge` instead of their measured memory (tests
    /// that need exact sizes).
    pub fn with_charge(mut self, charge: Charge) -> ModelCache {
        self.charge = charge;
        self
    }

    /// Its limits.
    pub fn limits(&self) -> CacheLimits {
        self.limits
    }

    /// The version, loading (and checking) it on a miss; the most recently used is
    /// kept at the front.
    pub fn get(
        &self,
        org: &str,
        version: &str,
        features: &[String],
    ) -> Result<SharedModel, ModelError> {
        self.lookup(org, version, features, true)
    }

    /// Load the version at start, before rows ask for it: not counted as a lookup
    /// (so the hit rate is the rows' own).
    pub fn preload(
        &self,
        org: &str,
        version: &str,
        features: &[String],
    ) -> Result<SharedModel, ModelError> {
        self.lookup(org, version, features, false)
    }

    fn lookup(
        &self,
        org: &str,
        version: &str,
        features: &[String],
        counted: bool,
    ) -> Result<SharedModel, ModelError> {
        let key = (org.to_string(), version.to_string());
        let mut st = lock(&self.state);
        loop {
            if let Some(i) = st
                .entries
                .iter()
                .position(|e| e.key.0 == org && e.key.1 == version)
            {
                if counted {
                    st.counters.hits += 1;
                }
                let e = st.entries.remove(i);
                let m = e.model.clone();
                st.entries.insert(0, e);
                return Ok(m);
            }
            if let Some(e) = st.failed.get(&key) {
                return Err(e.clone());
            }
            if !st.loading.contains(&key) {
                break;
            }
            st = self.loaded.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        if counted {
            st.counters.misses += 1;
        } else {
            st.counters.preloads += 1;
        }
        st.loading.insert(key.clone());
        drop(st);
        let t0 = Instant::now();
        let loaded = self.load(org, version, features);
        let elapsed = t0.elapsed().as_secs_f64();
        let mut st = lock(&self.state);
        st.loading.remove(&key);
        st.counters.load_seconds += elapsed;
        st.seq += 1;
        let record = ModelLoadRecord {
            seq: st.seq,
            org: org.to_string(),
            version: version.to_string(),
            ok: loaded.is_ok(),
            error: loaded.as_ref().err().map(|e| e.to_string()),
            load_ms: elapsed * 1000.0,
            bytes: loaded.as_ref().map_or(0, |(_, b)| *b),
            at_ms: chrono::Utc::now().timestamp_millis(),
        };
        if st.log.len() == LOAD_LOG_LEN {
            st.log.pop_front();
        }
        st.log.push_back(record);
        let result = match loaded {
            Ok((model, bytes)) => {
                let model = Arc::new(Mutex::new(model));
                st.entries.insert(
                    0,
                    Entry {
                        key,
                        model: model.clone(),
                        bytes,
                    },
                );
                self.evict(&mut st);
                Ok(model)
            }
            Err(e) => {
                st.failed.insert(key, e.clone());
                Err(e)
            }
        };
        drop(st);
        self.loaded.notify_all();
        result
    }

    /// Fetch (outside the load lock: a fetch may wait for the controller), then
    /// load and check under it, measuring the memory the version holds.
    fn load(
        &self,
        org: &str,
        version: &str,
        features: &[String],
    ) -> Result<(LoadedModel, u64), ModelError> {
        let dir = self.root.join(org).join(version);
        if let Some(src) = &self.source {
            src.ensure(org, version, &dir)
                .map_err(|reason| ModelError::Unavailable {
                    org: org.to_string(),
                    version: version.to_string(),
                    reason,
                })?;
        }
        let _one_at_a_time = lock(&self.load_lock);
        let before = c_heap_bytes();
        let model = LoadedModel::load(&self.env, &dir, features)?;
        let engines: Vec<String> = model
            .engines()
            .iter()
            .map(|(role, engine, why)| match why {
                None => format!("{role}={}", engine.as_str()),
                Some(why) => format!("{role}={} ({why})", engine.as_str()),
            })
            .collect();
        tracing::info!(
            org,
            version,
            engines = engines.join(", "),
            "model version loaded"
        );
        let measured = match (before, c_heap_bytes()) {
            (Some(b), Some(a)) => Some(a.saturating_sub(b)),
            _ => None,
        };
        let bytes = (self.charge)(measured, &model);
        Ok((model, bytes))
    }

    fn evict(&self, st: &mut State) {
        loop {
            let bytes: u64 = st.entries.iter().map(|e| e.bytes).sum();
            let over = st.entries.len() > self.limits.max_models || bytes > self.limits.max_bytes;
            if !over || st.entries.len() <= 1 {
                break;
            }
            st.entries.pop();
            st.counters.evictions += 1;
        }
    }

    /// Forget that a version failed (after it was replaced on disk).
    pub fn forget_failure(&self, org: &str, version: &str) {
        lock(&self.state)
            .failed
            .remove(&(org.to_string(), version.to_string()));
    }

    /// Counters and current size.
    pub fn stats(&self) -> CacheStats {
        let st = lock(&self.state);
        CacheStats {
            bytes: st.entries.iter().map(|e| e.bytes).sum(),
            models: st.entries.len(),
            loaded: st.entries.iter().map(|e| e.key.clone()).collect(),
            failed: st
                .failed
                .iter()
                .map(|((o, v), e)| (o.clone(), v.clone(), e.to_string()))
                .collect(),
            load_log: st.log.iter().cloned().collect(),
            ..st.counters.clone()
        }
    }
}
