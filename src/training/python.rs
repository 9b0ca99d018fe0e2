//! Running the Python side (`ml/train.py`, `ml/evaluate.py`) from the venv that
//! `make setup` creates, relaying its JSON-lines progress to the log.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// Process ids of the trainer children running now.
static CHILDREN: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());
/// Set by [`stop_children`]: no new child starts, runs end as interrupted.
static STOPPING: AtomicBool = AtomicBool::new(false);

/// Whether the service is stopping its trainer children.
pub fn stopping() -> bool {
    STOPPING.load(Ordering::Acquire)
}

/// Stop every trainer child (SIGTERM, then SIGKILL after `grace`) and refuse
/// new ones: the service is shutting down. Returns the children signalled.
pub fn stop_children(grace: std::time::Duration) -> usize {
    STOPPING.store(true, Ordering::Release);
    let pids: Vec<u32> = CHILDREN
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .copied()
        .collect();
    for &pid in &pids {
        // SAFETY: kill(2) on a child this process started and has not reaped.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    }
    let t0 = std::time::Instant::now();
    while t0.elapsed() < grace
        && !CHILDREN
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    for pid in CHILDREN.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        // SAFETY: as above; the child ignored SIGTERM.
        unsafe { libc::kill(*pid as libc::pid_t, libc::SIGKILL) };
    }
    pids.len()
}

/// What to run when the ML environment is missing.
pub const SETUP_HINT: &str = "run `make setup` in the prognos checkout (it creates ml/.venv)";

/// Why a Python step failed.
#[derive(Debug, thiserror::Error)]
pub enum PythonError {
    /// No venv/scripts found.
    #[error("ML environment not found (searched: {searched}); {SETUP_HINT}")]
    NotFound {
        /// Directories searched.
        searched: String,
    },
    /// The process could not start.
    #[error("cannot start {}: {source}", script.display())]
    Spawn {
        /// Script.
        script: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The script failed.
    #[error("{} failed ({status}): {stderr}", script.display())]
    Failed {
        /// Script.
        script: PathBuf,
        /// Exit status.
        status: String,
        /// Last lines of its stderr.
        stderr: String,
    },
}

/// The venv's interpreter and the scripts.
#[derive(Debug, Clone)]
pub struct MlEnv {
    /// `ml/.venv/bin/python`.
    pub python: PathBuf,
    /// The `ml/` directory.
    pub ml_dir: PathBuf,
}

impl MlEnv {
    /// Find `ml/.venv` and `ml/train.py` under the working directory or the
    /// executable's ancestors.
    pub fn locate() -> Result<MlEnv, PythonError> {
        let mut searched = Vec::new();
        for root in crate::onnx_runtime::default_roots() {
            let ml = root.join("ml");
            searched.push(ml.display().to_string());
            let python = ml.join(".venv/bin/python");
            if python.is_file() && ml.join("train.py").is_file() {
                return Ok(MlEnv { python, ml_dir: ml });
            }
        }
        Err(PythonError::NotFound {
            searched: searched.join(", "),
        })
    }

    /// Run `script` with `args`; each stdout line that is a JSON object is passed
    /// to `on_line`. Returns the last such object.
    pub fn run(
        &self,
        script: &str,
        args: &[String],
        mut on_line: impl FnMut(&serde_json::Value),
    ) -> Result<Option<serde_json::Value>, PythonError> {
        let path = self.ml_dir.join(script);
        if stopping() {
            return Err(PythonError::Spawn {
                script: path,
                source: std::io::Error::other("the service is stopping"),
            });
        }
        let mut cmd = Command::new(&self.python);
        cmd.arg(&path)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: prctl is async-signal-safe; the child dies with this process
        // even when it is killed (-9) and cannot stop its children itself.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|source| PythonError::Spawn {
            script: path.clone(),
            source,
        })?;
        let pid = child.id();
        CHILDREN
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(pid);
        struct Forget(u32);
        impl Drop for Forget {
            fn drop(&mut self) {
                CHILDREN
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&self.0);
            }
        }
        let _forget = Forget(pid);
        let stderr = child.stderr.take().expect("piped");
        let err_thread = std::thread::spawn(move || {
            let mut lines: Vec<String> = BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
                .collect();
            let n = lines.len();
            lines.drain(..n.saturating_sub(15));
            lines.join("\n")
        });
        let mut last = None;
        for line in BufReader::new(child.stdout.take().expect("piped"))
            .lines()
            .map_while(Result::ok)
        {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                && v.is_object()
            {
                on_line(&v);
                last = Some(v);
            }
        }
        let status = child.wait().map_err(|source| PythonError::Spawn {
            script: path.clone(),
            source,
        })?;
        let stderr = err_thread.join().unwrap_or_default();
        if !status.success() {
            return Err(PythonError::Failed {
                script: path,
                status: status.to_string(),
                stderr,
            });
        }
        Ok(last)
    }
}

/// Path as a string argument.
pub fn arg(p: &Path) -> String {
    p.display().to_string()
}
