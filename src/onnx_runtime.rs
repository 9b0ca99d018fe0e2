//! Finding and loading the ONNX Runtime shared library.
//!
//! `ort` is built with `load-dynamic`: nothing is downloaded at build time and the
//! library comes from the pinned `onnxruntime` wheel that `make setup` installs in
//! `ml/.venv`. `ORT_DYLIB_PATH` wins when set; otherwise the venv is searched from
//! the working directory and from the executable's ancestors (so
//! `target/release/prognos` finds the checkout's venv wherever it is started).

use std::path::{Path, PathBuf};

/// The ONNX Runtime release the `ort` crate's `api-31` feature is built against.
pub const EXPECTED_VERSION: &str = "1.31.1";

/// What to run when the library is missing.
pub const SETUP_HINT: &str = "run `make setup` in the prognos checkout (it installs onnxruntime==1.31.1 into ml/.venv), \
     or set ORT_DYLIB_PATH=/path/to/libonnxruntime.so.1.31.1";

/// Why ONNX Runtime could not be made ready.
#[derive(Debug, thiserror::Error)]
pub enum OrtError {
    /// `ORT_DYLIB_PATH` names a file that does not exist.
    #[error("ORT_DYLIB_PATH={} does not exist; {SETUP_HINT}", .0.display())]
    EnvPathMissing(PathBuf),
    /// No library in any searched venv.
    #[error("ONNX Runtime library not found (searched: {searched}); {SETUP_HINT}")]
    NotFound {
        /// Directories searched, comma-separated.
        searched: String,
    },
    /// The first attempt in this process failed; this is its message.
    #[error("{0}")]
    Earlier(String),
    /// The library was found but could not be loaded or is too old.
    #[error("cannot load ONNX Runtime from {}: {reason}", path.display())]
    Load {
        /// The library.
        path: PathBuf,
        /// The loader's message.
        reason: String,
    },
}

/// Where the library was found and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// Path of `libonnxruntime.so*`.
    pub path: PathBuf,
    /// `ORT_DYLIB_PATH` or `ml/.venv`.
    pub how: &'static str,
}

/// Find the library: `ORT_DYLIB_PATH`, else `ml/.venv` under `roots`.
pub fn locate(env_path: Option<&str>, roots: &[PathBuf]) -> Result<Located, OrtError> {
    if let Some(p) = env_path.filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(Located {
                path: p,
                how: "ORT_DYLIB_PATH",
            })
        } else {
            Err(OrtError::EnvPathMissing(p))
        };
    }
    let mut searched = Vec::new();
    for root in roots {
        let lib = root.join("ml/.venv/lib");
        searched.push(lib.display().to_string());
        if let Some(p) = find_in_venv_lib(&lib) {
            return Ok(Located {
                path: p,
                how: "ml/.venv",
            });
        }
    }
    Err(OrtError::NotFound {
        searched: searched.join(", "),
    })
}

fn find_in_venv_lib(lib: &Path) -> Option<PathBuf> {
    let mut pythons: Vec<PathBuf> = std::fs::read_dir(lib)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("python3"))
        })
        .collect();
    pythons.sort();
    for py in pythons {
        let capi = py.join("site-packages/onnxruntime/capi");
        let exact = capi.join(format!("libonnxruntime.so.{EXPECTED_VERSION}"));
        if exact.is_file() {
            return Some(exact);
        }
        // Another onnxruntime release: take its versioned library; loading checks the API level.
        let mut other: Vec<PathBuf> = std::fs::read_dir(&capi)
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("libonnxruntime.so"))
            })
            .collect();
        other.sort();
        if let Some(p) = other.pop() {
            return Some(p);
        }
    }
    None
}

/// The directories searched by default: the working directory and the executable's ancestors.
pub fn default_roots() -> Vec<PathBuf> {
    let mut roots = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        roots.push(cwd);
    }
    if let Ok(exe) = std::env::current_exe() {
        let exe = exe.canonicalize().unwrap_or(exe);
        for a in exe.ancestors().skip(1) {
            if !roots.iter().any(|r| r == a) {
                roots.push(a.to_path_buf());
            }
        }
    }
    roots
}

/// A loaded ONNX Runtime: the environment sessions are created under.
pub struct Runtime {
    /// The ort environment.
    pub environment: ort::environment::Environment,
    /// Where the library came from.
    pub located: Located,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("located", &self.located)
            .finish()
    }
}

/// Locate (with the process environment) and load ONNX Runtime. ONNX Runtime
/// allows one environment per process, so the first call creates it and later
/// calls return a handle to the same one (or the same error).
pub fn init() -> Result<Runtime, OrtError> {
    static RUNTIME: std::sync::OnceLock<Result<Runtime, (PathBuf, String)>> =
        std::sync::OnceLock::new();
    let r = RUNTIME.get_or_init(|| {
        let env_path = std::env::var("ORT_DYLIB_PATH").ok();
        let located = locate(env_path.as_deref(), &default_roots())
            .map_err(|e| (PathBuf::new(), e.to_string()))?;
        let load = |reason: String| (located.path.clone(), reason);
        let environment = ort::init_from(&located.path)
            .map_err(|e| load(e.to_string()))?
            .with_name("prognos")
            .build()
            .map_err(|e| load(e.to_string()))?;
        Ok(Runtime {
            environment,
            located,
        })
    });
    match r {
        Ok(rt) => Ok(Runtime {
            environment: rt.environment.clone(),
            located: rt.located.clone(),
        }),
        // Not found: repeat the first call's message (with its hint).
        Err((path, reason)) if path.as_os_str().is_empty() => {
            Err(OrtError::Earlier(reason.clone()))
        }
        Err((path, reason)) => Err(OrtError::Load {
            path: path.clone(),
            reason: reason.clone(),
        }),
    }
}

/// The loaded library's build description (version, commit).
pub fn build_info() -> &'static str {
    ort::info()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_path_wins_and_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let lib = dir.path().join("libonnxruntime.so.9.9.9");
        std::fs::write(&lib, b"").unwrap();
        let l = locate(Some(lib.to_str().unwrap()), &[]).unwrap();
        assert_eq!(l.how, "ORT_DYLIB_PATH");
        let e = locate(Some("/nonexistent/libonnxruntime.so"), &[]).unwrap_err();
        assert!(e.to_string().contains("make setup"), "{e}");
    }

    #[test]
    fn finds_the_venv_library_under_a_root() {
        let dir = tempfile::tempdir().unwrap();
        let capi = dir
            .path()
            .join("ml/.venv/lib/python3.11/site-packages/onnxruntime/capi");
        std::fs::create_dir_all(&capi).unwrap();
        std::fs::write(capi.join("libonnxruntime_providers_shared.so"), b"").unwrap();
        let want = capi.join(format!("libonnxruntime.so.{EXPECTED_VERSION}"));
        std::fs::write(&want, b"").unwrap();
        let empty = tempfile::tempdir().unwrap();
        let l = locate(
            None,
            &[empty.path().to_path_buf(), dir.path().to_path_buf()],
        )
        .unwrap();
        assert_eq!(l.path, want);
        assert_eq!(l.how, "ml/.venv");
    }

    #[test]
    fn missing_library_says_what_to_run() {
        let empty = tempfile::tempdir().unwrap();
        let e = locate(None, &[empty.path().to_path_buf()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("make setup"), "{e}");
        assert!(e.contains("ORT_DYLIB_PATH"), "{e}");
        assert!(e.contains(&empty.path().display().to_string()), "{e}");
    }

    /// The real library from the checkout's venv loads and reports the pinned version.
    #[test]
    fn loads_the_pinned_library_from_the_venv() {
        let rt = init().expect("make setup installs ml/.venv before the tests run");
        assert!(
            build_info().contains(EXPECTED_VERSION)
                || rt
                    .located
                    .path
                    .ends_with(format!("libonnxruntime.so.{EXPECTED_VERSION}")),
            "{}",
            build_info()
        );
    }
}
