//! One module per subcommand.

pub mod check;
pub mod controller;
pub mod features;
pub mod history;
pub mod replay;
pub mod run;
pub mod simulate;
pub mod train;
pub mod users;
pub mod worker;

use std::time::Duration;

/// Wait for timely workers to finish, calling `tick` every `every` meanwhile
/// (progress bars, metrics). A worker that failed is an error.
pub fn join_workers<T: Send + 'static>(
    guards: timely::communication::WorkerGuards<T>,
    every: Duration,
    mut tick: impl FnMut(),
) -> anyhow::Result<Vec<T>> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(guards.join());
    });
    let results = loop {
        match rx.recv_timeout(every) {
            Ok(r) => break r,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => tick(),
            Err(e) => anyhow::bail!("timely workers vanished: {e}"),
        }
    };
    tick();
    results
        .into_iter()
        .map(|r| r.map_err(|e| anyhow::anyhow!("a timely worker failed: {e}")))
        .collect()
}
