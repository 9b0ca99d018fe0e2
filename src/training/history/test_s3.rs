//! [`TestS3`]: a throwaway S3-compatible server for tests — moto's server from
//! the project's venv (`ml/.venv`, installed by `scripts/setup.sh`), on a free
//! 127.0.0.1 port, with one bucket, killed on drop.

use super::{HistoryError, HistoryStore};
use prognos_connectors::kafka::test_broker::free_port;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running S3-compatible server with one bucket.
pub struct TestS3 {
    child: Child,
    port: u16,
    bucket: String,
}

impl TestS3 {
    /// Start on a free port, wait until it answers, and create `bucket`.
    pub fn start(root: &Path, bucket: &str) -> TestS3 {
        let port = free_port();
        let python = root.join("ml/.venv/bin/python");
        assert!(
            python.exists(),
            "{} not found (run scripts/setup.sh)",
            python.display()
        );
        let child = Command::new(python)
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the S3 test server starts");
        let s3 = TestS3 {
            child,
            port,
            bucket: bucket.to_string(),
        };
        let client = reqwest::blocking::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match client.put(format!("{}/{bucket}", s3.endpoint())).send() {
                Ok(r) if r.status().is_success() => break,
                _ => {
                    assert!(
                        Instant::now() < deadline,
                        "the S3 test server did not answer"
                    );
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
        s3
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `s3://<bucket>/<prefix>`.
    pub fn url(&self, prefix: &str) -> String {
        format!("s3://{}/{prefix}", self.bucket)
    }

    /// The environment a process needs to reach it (`AWS_*`).
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT", self.endpoint()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ALLOW_HTTP", "true".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// The history at `s3://<bucket>/<prefix>` on this server.
    pub fn store(&self, prefix: &str) -> Result<HistoryStore, HistoryError> {
        HistoryStore::open_with(
            &self.url(prefix),
            self.env().into_iter().map(|(k, v)| (k.to_lowercase(), v)),
        )
    }
}

impl Drop for TestS3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
