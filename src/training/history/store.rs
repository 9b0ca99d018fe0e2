//! Where the history lives: a local directory (fsynced writes, the default) or
//! an object-store URL (`s3://bucket/prefix` through the `object_store` crate,
//! so a cluster's workers and controller share one history without a shared
//! volume). Everything above this module names files by a key relative to the
//! root (`org=<id>/date=<YYYY-MM-DD>/<name>.parquet`); a key is written whole or
//! not at all on either backend.

use super::HistoryError;
use bytes::Bytes;
use object_store::ObjectStore;
use object_store::path::Path as ObjectPath;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// A history root.
#[derive(Clone)]
pub struct HistoryStore {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Dir(PathBuf),
    Object {
        store: Arc<dyn ObjectStore>,
        prefix: ObjectPath,
        url: String,
    },
}

impl std::fmt::Debug for HistoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HistoryStore({})", self.display())
    }
}

/// An entry of a listing: its name (the last part of the key) and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The last part of the key.
    pub name: String,
    /// Bytes (0 for a folder).
    pub size: u64,
}

impl HistoryStore {
    /// A history in the local directory `dir`.
    pub fn dir(dir: &Path) -> HistoryStore {
        HistoryStore {
            backend: Backend::Dir(dir.to_path_buf()),
        }
    }

    /// A history at `location`: a path, a `file://` URL, or an `s3://bucket/prefix`
    /// URL whose endpoint and credentials come from the usual `AWS_*` variables
    /// (`AWS_ENDPOINT`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_REGION`, `AWS_ALLOW_HTTP=true` for a plain-HTTP endpoint).
    pub fn open(location: &str) -> Result<HistoryStore, HistoryError> {
        HistoryStore::open_with(location, std::iter::empty::<(String, String)>())
    }

    /// [`HistoryStore::open`] with object-store options (`aws_endpoint`,
    /// `aws_allow_http`, …) that win over the environment's.
    pub fn open_with(
        location: &str,
        options: impl IntoIterator<Item = (String, String)>,
    ) -> Result<HistoryStore, HistoryError> {
        let bad = |reason: String| HistoryError::Location {
            location: location.to_string(),
            reason,
        };
        let Some((scheme, _)) = location.split_once("://") else {
            return Ok(HistoryStore::dir(Path::new(location)));
        };
        let url = url::Url::parse(location).map_err(|e| bad(e.to_string()))?;
        match scheme {
            "file" => {
                let path = url
                    .to_file_path()
                    .map_err(|()| bad("not an absolute file path".into()))?;
                Ok(HistoryStore::dir(&path))
            }
            "s3" | "s3a" => {
                let mut builder = object_store::aws::AmazonS3Builder::from_env().with_url(location);
                for (k, v) in options {
                    let key = k
                        .parse::<object_store::aws::AmazonS3ConfigKey>()
                        .map_err(|e| bad(format!("option `{k}`: {e}")))?;
                    builder = builder.with_config(key, v);
                }
                let store = builder.build().map_err(|e| bad(e.to_string()))?;
                let prefix =
                    ObjectPath::from_url_path(url.path()).map_err(|e| bad(e.to_string()))?;
                Ok(HistoryStore {
                    backend: Backend::Object {
                        store: Arc::new(store),
                        prefix,
                        url: location.trim_end_matches('/').to_string(),
                    },
                })
            }
            other => Err(bad(format!(
                "unsupported scheme `{other}` (a directory, file:// or s3://)"
            ))),
        }
    }

    /// Where it is, for messages.
    pub fn display(&self) -> String {
        match &self.backend {
            Backend::Dir(d) => d.display().to_string(),
            Backend::Object { url, .. } => url.clone(),
        }
    }

    /// The local directory, when the history is one.
    pub fn local_dir(&self) -> Option<&Path> {
        match &self.backend {
            Backend::Dir(d) => Some(d),
            Backend::Object { .. } => None,
        }
    }

    /// A key's full name, for messages and errors.
    pub fn name_of(&self, key: &str) -> PathBuf {
        match &self.backend {
            Backend::Dir(d) => d.join(key),
            Backend::Object { url, .. } => PathBuf::from(format!("{url}/{key}")),
        }
    }

    fn object_path(prefix: &ObjectPath, key: &str) -> ObjectPath {
        let mut p = prefix.clone();
        for part in key.split('/').filter(|s| !s.is_empty()) {
            p = p.child(part);
        }
        p
    }

    fn io(&self, key: &str) -> impl FnOnce(std::io::Error) -> HistoryError {
        let path = self.name_of(key);
        move |source| HistoryError::Io { path, source }
    }

    fn store_err(&self, key: &str) -> impl FnOnce(object_store::Error) -> HistoryError {
        let location = self.name_of(key).display().to_string();
        move |e| HistoryError::Location {
            location,
            reason: e.to_string(),
        }
    }

    /// Make the root exist (a no-op for an object store).
    pub fn create(&self) -> Result<(), HistoryError> {
        match &self.backend {
            Backend::Dir(d) => std::fs::create_dir_all(d).map_err(HistoryError::io(d)),
            Backend::Object { .. } => Ok(()),
        }
    }

    /// The folders directly under `key`, sorted by name.
    pub fn folders(&self, key: &str) -> Result<Vec<String>, HistoryError> {
        let mut v = self.list(key, true)?;
        v.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(v.into_iter().map(|e| e.name).collect())
    }

    /// The files directly under `key`, sorted by name.
    pub fn files(&self, key: &str) -> Result<Vec<Entry>, HistoryError> {
        let mut v = self.list(key, false)?;
        v.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(v)
    }

    fn list(&self, key: &str, folders: bool) -> Result<Vec<Entry>, HistoryError> {
        match &self.backend {
            Backend::Dir(d) => {
                let dir = d.join(key);
                let it = match std::fs::read_dir(&dir) {
                    Ok(it) => it,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                    Err(e) => return Err(HistoryError::io(&dir)(e)),
                };
                Ok(it
                    .filter_map(|e| e.ok())
                    .filter_map(|e| {
                        let meta = e.metadata().ok()?;
                        (meta.is_dir() == folders).then(|| Entry {
                            name: e.file_name().to_string_lossy().into_owned(),
                            size: if folders { 0 } else { meta.len() },
                        })
                    })
                    .collect())
            }
            Backend::Object { store, prefix, .. } => {
                let (store, at) = (store.clone(), Self::object_path(prefix, key));
                let listing = block(async move { store.list_with_delimiter(Some(&at)).await })?
                    .map_err(self.store_err(key))?;
                Ok(if folders {
                    listing
                        .common_prefixes
                        .iter()
                        .filter_map(|p| p.filename().map(str::to_string))
                        .map(|name| Entry { name, size: 0 })
                        .collect()
                } else {
                    listing
                        .objects
                        .iter()
                        .filter_map(|o| {
                            Some(Entry {
                                name: o.location.filename()?.to_string(),
                                size: o.size,
                            })
                        })
                        .collect()
                })
            }
        }
    }

    /// The bytes of `key`, None when it does not exist.
    pub fn get(&self, key: &str) -> Result<Option<Bytes>, HistoryError> {
        match &self.backend {
            Backend::Dir(d) => match std::fs::read(d.join(key)) {
                Ok(b) => Ok(Some(Bytes::from(b))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(self.io(key)(e)),
            },
            Backend::Object { store, prefix, .. } => {
                let (store, at) = (store.clone(), Self::object_path(prefix, key));
                let r = block(async move {
                    match store.get(&at).await {
                        Ok(g) => g.bytes().await.map(Some),
                        Err(object_store::Error::NotFound { .. }) => Ok(None),
                        Err(e) => Err(e),
                    }
                })?;
                r.map_err(self.store_err(key))
            }
        }
    }

    /// Whether `key` exists.
    pub fn exists(&self, key: &str) -> Result<bool, HistoryError> {
        match &self.backend {
            Backend::Dir(d) => Ok(d.join(key).exists()),
            Backend::Object { store, prefix, .. } => {
                let (store, at) = (store.clone(), Self::object_path(prefix, key));
                match block(async move { store.head(&at).await })? {
                    Ok(_) => Ok(true),
                    Err(object_store::Error::NotFound { .. }) => Ok(false),
                    Err(e) => Err(self.store_err(key)(e)),
                }
            }
        }
    }

    /// Write `bytes` as `key`, whole: through a temporary file, fsync and rename
    /// in a directory; one PUT (atomic by the object store's contract) otherwise.
    pub fn put(&self, key: &str, bytes: Bytes) -> Result<(), HistoryError> {
        match &self.backend {
            Backend::Dir(d) => {
                let path = d.join(key);
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(HistoryError::io(dir))?;
                }
                super::write_atomically(&path, &bytes)
            }
            Backend::Object { store, prefix, .. } => {
                let (store, at) = (store.clone(), Self::object_path(prefix, key));
                block(async move { store.put(&at, bytes.into()).await })?
                    .map(|_| ())
                    .map_err(self.store_err(key))
            }
        }
    }

    /// Remove `key` (a file); removing what is not there is not an error.
    pub fn delete(&self, key: &str) -> Result<(), HistoryError> {
        match &self.backend {
            Backend::Dir(d) => {
                let path = d.join(key);
                match std::fs::remove_file(&path) {
                    Ok(()) => {
                        super::sync_dir(&path);
                        Ok(())
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(HistoryError::io(&path)(e)),
                }
            }
            Backend::Object { store, prefix, .. } => {
                let (store, at) = (store.clone(), Self::object_path(prefix, key));
                match block(async move { store.delete(&at).await })? {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                    Err(e) => Err(self.store_err(key)(e)),
                }
            }
        }
    }

    /// Remove the folder `key` and everything in it.
    pub fn delete_folder(&self, key: &str) -> Result<(), HistoryError> {
        match &self.backend {
            Backend::Dir(d) => {
                let dir = d.join(key);
                match std::fs::remove_dir_all(&dir) {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(HistoryError::io(&dir)(e)),
                }
            }
            Backend::Object { .. } => {
                for sub in self.folders(key)? {
                    self.delete_folder(&format!("{key}/{sub}"))?;
                }
                for f in self.files(key)? {
                    self.delete(&format!("{key}/{}", f.name))?;
                }
                Ok(())
            }
        }
    }
}

/// The runtime the object store's requests run on: its own, so a caller on a
/// plain thread, a dataflow worker or inside the API's runtime can all wait.
fn runtime() -> Result<&'static tokio::runtime::Runtime, HistoryError> {
    static RT: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("history-io")
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(|reason| HistoryError::Location {
        location: "object store".into(),
        reason: format!("no I/O runtime: {reason}"),
    })
}

/// Run `fut` on the history's runtime and wait for it.
fn block<T: Send + 'static>(
    fut: impl std::future::Future<Output = T> + Send + 'static,
) -> Result<T, HistoryError> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime()?.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv().map_err(|_| HistoryError::Location {
        location: "object store".into(),
        reason: "the request was dropped".into(),
    })
}
