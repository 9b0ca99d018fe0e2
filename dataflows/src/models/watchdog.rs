//! Deadlines for model runs: one thread per process sets ONNX Runtime's
//! terminate flag on a run's options when its deadline passes, so a slow or
//! stuck model run ends with an error instead of holding its worker.

use ort::session::RunOptions;
use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Instant;

#[derive(Default)]
struct Armed {
    next_id: u64,
    runs: BTreeMap<u64, (Instant, Arc<RunOptions>)>,
}

struct Watchdog {
    armed: Mutex<Armed>,
    changed: Condvar,
}

fn watchdog() -> &'static Watchdog {
    static W: OnceLock<&'static Watchdog> = OnceLock::new();
    W.get_or_init(|| {
        let w: &'static Watchdog = Box::leak(Box::new(Watchdog {
            armed: Mutex::new(Armed::default()),
            changed: Condvar::new(),
        }));
        std::thread::Builder::new()
            .name("model-deadlines".into())
            .spawn(move || w.run())
            .expect("spawn the model deadline thread");
        w
    })
}

impl Watchdog {
    fn run(&self) {
        let mut armed = self.armed.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let now = Instant::now();
            let due: Vec<u64> = armed
                .runs
                .iter()
                .filter(|(_, (d, _))| *d <= now)
                .map(|(id, _)| *id)
                .collect();
            for id in due {
                if let Some((_, opts)) = armed.runs.remove(&id)
                    && let Err(e) = opts.terminate()
                {
                    tracing::warn!(error = %e, "cannot stop a model run past its deadline");
                }
            }
            let next = armed.runs.values().map(|(d, _)| *d).min();
            armed = match next {
                None => self.changed.wait(armed).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let wait = d.saturating_duration_since(Instant::now());
                    match self.changed.wait_timeout(armed, wait) {
                        Ok((g, _)) => g,
                        Err(e) => e.into_inner().0,
                    }
                }
            };
        }
    }
}

/// A run's deadline, disarmed when dropped.
pub struct Deadline {
    id: u64,
}

impl Deadline {
    /// Terminate the runs made with `opts` at `at`.
    pub fn arm(at: Instant, opts: Arc<RunOptions>) -> Deadline {
        let w = watchdog();
        let mut armed = w.armed.lock().unwrap_or_else(|e| e.into_inner());
        armed.next_id += 1;
        let id = armed.next_id;
        armed.runs.insert(id, (at, opts));
        drop(armed);
        w.changed.notify_one();
        Deadline { id }
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        watchdog()
            .armed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .runs
            .remove(&self.id);
    }
}
