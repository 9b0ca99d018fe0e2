//! The simulator's error type.

use std::path::PathBuf;

/// Everything the simulator can fail with; each variant names the input at fault.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A [`super::SimConfig`] field (or the speed) is out of range.
    #[error("invalid simulator setting `{key}`: {reason}")]
    InvalidConfig {
        /// The offending field, e.g. `interval_ms`.
        key: &'static str,
        /// Why it was refused.
        reason: String,
    },
    /// An [`super::OrgSchema`] cannot be written unambiguously.
    #[error("invalid simulator schema for org `{org}`: {reason}")]
    InvalidSchema {
        /// The org id as given.
        org: String,
        /// Why it was refused.
        reason: String,
    },
    /// The output directory could not be created.
    #[error("cannot create output directory {}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// An output file could not be created or written.
    #[error("cannot write {}", path.display())]
    WriteFile {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The caller's writer (e.g. stdout) failed.
    #[error("cannot write simulator output stream")]
    WriteStream {
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A generator thread panicked (a bug; reported rather than propagated).
    #[error("simulator thread for org `{org}` panicked")]
    ThreadPanicked {
        /// The org that thread was generating.
        org: String,
    },
}
