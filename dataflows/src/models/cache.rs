//! The model cache: loaded versions, least recently used evicted first, bounded
//! by count and by bytes of ONNX files. A version that failed to load or check is
//! remembered as unhealthy and not retried on every batch.

use super::runner::{LoadedModel, ModelError};
use ort::environment::Environment;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

/// Cache limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLimits {
    /// Most versions held at once.
    pub max_models: usize,
    /// Most ONNX bytes held at once (one oversized model is still held alone).
    pub max_bytes: u64,
}

impl Default for CacheLimits {
    fn default() -> Self {
        CacheLimits {
            max_models: 64,
            max_bytes: 512 << 20,
        }
    }
}

/// Cache counters, for metrics and health.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CacheStats {
    /// Lookups served from memory.
    pub hits: u64,
    /// Lookups that loaded from disk.
    pub misses: u64,
    /// Versions evicted.
    pub evictions: u64,
    /// Seconds spent loading and checking.
    pub load_seconds: f64,
    /// Bytes held now.
    pub bytes: u64,
    /// Versions held now.
    pub models: usize,
    /// The (org, version) pairs held now, most recently used first.
    pub loaded: Vec<(String, String)>,
    /// The (org, version) pairs that failed their load-time check, with the reason.
    pub failed: Vec<(String, String, String)>,
}

/// Where version directories live: `<root>/<org>/<version>/`.
pub type ModelRoot = Arc<PathBuf>;

/// Where a version's files come from when its directory is not there yet (a
/// cluster's worker fetches them from the controller). The cache calls
/// [`ModelSource::ensure`] on every miss, before loading.
pub trait ModelSource: Send + Sync {
    /// Make `dir` hold the version's files, waiting as long as the source is
    /// unreachable (never scoring with another version meanwhile). An error is
    /// final: the version is remembered as unusable and its org runs on the rules.
    fn ensure(&self, org: &str, version: &str, dir: &std::path::Path) -> Result<(), String>;
}

/// Loaded versions keyed by (org, version).
pub struct ModelCache {
    env: Environment,
    root: ModelRoot,
    limits: CacheLimits,
    entries: Vec<((String, String), LoadedModel)>,
    failed: HashMap<(String, String), ModelError>,
    stats: CacheStats,
    source: Option<Arc<dyn ModelSource>>,
}

impl ModelCache {
    /// An empty cache loading from `root`.
    pub fn new(env: Environment, root: ModelRoot, limits: CacheLimits) -> ModelCache {
        ModelCache {
            env,
            root,
            limits,
            entries: Vec::new(),
            failed: HashMap::new(),
            stats: CacheStats::default(),
            source: None,
        }
    }

    /// Fetch missing versions from `source` before loading them.
    pub fn with_source(mut self, source: Option<Arc<dyn ModelSource>>) -> ModelCache {
        self.source = source;
        self
    }

    /// The version, loading (and checking) it on a miss; the most recently used is
    /// kept at the front.
    pub fn get(
        &mut self,
        org: &str,
        version: &str,
        features: &[String],
    ) -> Result<&mut LoadedModel, ModelError> {
        if let Some(i) = self
            .entries
            .iter()
            .position(|((o, v), _)| o == org && v == version)
        {
            self.stats.hits += 1;
            let e = self.entries.remove(i);
            self.entries.insert(0, e);
            return Ok(&mut self.entries[0].1);
        }
        let key = (org.to_string(), version.to_string());
        if let Some(e) = self.failed.get(&key) {
            return Err(e.clone());
        }
        self.stats.misses += 1;
        let dir = self.root.join(org).join(version);
        let t0 = std::time::Instant::now();
        let fetched = match &self.source {
            Some(src) => src
                .ensure(org, version, &dir)
                .map_err(|reason| ModelError::Unavailable {
                    org: org.to_string(),
                    version: version.to_string(),
                    reason,
                }),
            None => Ok(()),
        };
        let loaded = fetched.and_then(|()| LoadedModel::load(&self.env, &dir, features));
        self.stats.load_seconds += t0.elapsed().as_secs_f64();
        match loaded {
            Ok(m) => {
                self.entries.insert(0, (key, m));
                self.evict();
                Ok(&mut self.entries[0].1)
            }
            Err(e) => {
                self.failed.insert(key, e.clone());
                Err(e)
            }
        }
    }

    fn evict(&mut self) {
        loop {
            let bytes: u64 = self.entries.iter().map(|(_, m)| m.bytes).sum();
            let over = self.entries.len() > self.limits.max_models || bytes > self.limits.max_bytes;
            if !over || self.entries.len() <= 1 {
                break;
            }
            self.entries.pop();
            self.stats.evictions += 1;
        }
    }

    /// Forget that a version failed (after it was replaced on disk).
    pub fn forget_failure(&mut self, org: &str, version: &str) {
        self.failed.remove(&(org.to_string(), version.to_string()));
    }

    /// Counters and current size.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            bytes: self.entries.iter().map(|(_, m)| m.bytes).sum(),
            models: self.entries.len(),
            loaded: self.entries.iter().map(|(k, _)| k.clone()).collect(),
            failed: self
                .failed
                .iter()
                .map(|((o, v), e)| (o.clone(), v.clone(), e.to_string()))
                .collect(),
            ..self.stats.clone()
        }
    }
}
