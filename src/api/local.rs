//! Commands on the service's own host reach it through `<data-dir>/service.json`
//! (mode 0600): the API's address and a secret drawn at each start. `prognos
//! train` finds the store locked by the running service and hands its run over
//! this way (`POST /api/ml/train` with `Bearer local:<secret>`), as the `cli`
//! trigger. Whoever may read the data dir may already read the JWT secret and
//! the store, so the file gives nothing a host user did not have; the API
//! treats its bearer as a super admin named [`CLI_USER`] (audited as such).

use super::request::Caller;
use crate::auth::Role;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The file in the data dir.
pub const FILE: &str = "service.json";
/// The bearer prefix of the local secret.
pub const TOKEN_PREFIX: &str = "local:";
/// The caller the local secret authenticates (`:` is not allowed in usernames).
pub const CLI_USER: &str = "local:cli";

/// What the file holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceInfo {
    /// The service's process id.
    pub pid: u32,
    /// The API's base URL on this host.
    pub url: String,
    /// The bearer token for commands on this host.
    pub token: String,
}

/// A fresh secret (32 random bytes, hex).
pub fn new_token() -> String {
    crate::auth::random_bytes::<32>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The header a command on the host names its OS user in (the caller is then
/// `cli:<user>` instead of [`CLI_USER`]).
pub const OS_USER_HEADER: &str = "x-prognos-os-user";

/// Whether `c` came through the local secret (a command on the host).
pub fn is_local(c: &Caller) -> bool {
    c.username == CLI_USER || c.username.starts_with("cli:")
}

/// The caller behind the local secret.
pub fn caller() -> Caller {
    Caller {
        username: CLI_USER.to_string(),
        role: Role::SuperAdmin,
        org: None,
    }
}

/// The written file; removed when dropped (a kill -9 leaves it: readers check
/// that its process is alive).
pub struct ServiceFile {
    path: PathBuf,
}

impl ServiceFile {
    /// Write `<data_dir>/service.json` for an API listening on `addr`.
    pub fn write(
        data_dir: &Path,
        addr: std::net::SocketAddr,
        secret: &str,
    ) -> std::io::Result<ServiceFile> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let host = if addr.ip().is_unspecified() {
            match addr {
                std::net::SocketAddr::V4(_) => "127.0.0.1".to_string(),
                std::net::SocketAddr::V6(_) => "[::1]".to_string(),
            }
        } else {
            match addr {
                std::net::SocketAddr::V4(a) => a.ip().to_string(),
                std::net::SocketAddr::V6(a) => format!("[{}]", a.ip()),
            }
        };
        let info = ServiceInfo {
            pid: std::process::id(),
            url: format!("http://{host}:{}", addr.port()),
            token: format!("{TOKEN_PREFIX}{secret}"),
        };
        let path = data_dir.join(FILE);
        let tmp = data_dir.join(format!(".{FILE}.tmp"));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(&info)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        Ok(ServiceFile { path })
    }
}

impl Drop for ServiceFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The running service of `data_dir`, if its file is there and its process alive.
pub fn running_service(data_dir: &Path) -> Option<ServiceInfo> {
    let text = std::fs::read(data_dir.join(FILE)).ok()?;
    let info: ServiceInfo = serde_json::from_slice(&text).ok()?;
    let alive = Path::new(&format!("/proc/{}", info.pid)).exists();
    alive.then_some(info)
}
