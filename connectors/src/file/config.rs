//! File inputs: which files, which org, which partition, which format.

use std::path::{Path, PathBuf};

/// Row format of an input file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// One JSON object per line (`.jsonl`, `.ndjson`, `.json`).
    Jsonl,
    /// Comma-separated with a header line (`.csv`).
    Csv,
}

impl FileFormat {
    /// The format a file name implies.
    pub fn from_path(path: &Path) -> Option<FileFormat> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "jsonl" | "ndjson" | "json" => Some(FileFormat::Jsonl),
            "csv" => Some(FileFormat::Csv),
            _ => None,
        }
    }
}

/// One input file: a partition read in order by one worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInput {
    /// The file.
    pub path: PathBuf,
    /// Organization of every row in it.
    pub org: String,
    /// Global partition id.
    pub partition: u32,
    /// Row format.
    pub format: FileFormat,
}

/// Why the inputs cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum FileInputError {
    /// Unknown extension.
    #[error("input {}: unknown format (use .jsonl, .ndjson, .json or .csv)", .0.display())]
    UnknownFormat(PathBuf),
    /// No org given and the file name does not name one.
    #[error("input {}: cannot tell the organization from the file name; pass --org", .0.display())]
    NoOrg(PathBuf),
}

/// Describe `paths` as partitions `0..n` in the order given. The org is `org`
/// when given, else the file stem (`acme-heat.jsonl` → `acme-heat`), which is how
/// `prognos simulate --out` names its files.
pub fn file_inputs(paths: &[PathBuf], org: Option<&str>) -> Result<Vec<FileInput>, FileInputError> {
    paths
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let format =
                FileFormat::from_path(p).ok_or_else(|| FileInputError::UnknownFormat(p.clone()))?;
            let org = match org {
                Some(o) => o.to_string(),
                None => p
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| FileInputError::NoOrg(p.clone()))?
                    .to_string(),
            };
            Ok(FileInput {
                path: p.clone(),
                org,
                partition: i as u32,
                format,
            })
        })
        .collect()
}

/// The inputs worker `index` of `peers` reads: partition `p` goes to worker `p % peers`.
pub fn assign(inputs: &[FileInput], index: usize, peers: usize) -> Vec<FileInput> {
    inputs
        .iter()
        .filter(|f| f.partition as usize % peers == index)
        .cloned()
        .collect()
}
