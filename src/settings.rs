//! Loading the configuration: a TOML file (or the built-in example), then
//! `PROGNOS_<SECTION>__<KEY>` environment overrides, then validation.

use prognos_dataflows::config::{Config, ConfigError};
use std::path::{Path, PathBuf};

/// The example configuration compiled into the binary, used when no file is given.
pub const EXAMPLE_CONFIG: &str = include_str!("../config/prognos.example.toml");

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file or an override is invalid.
    #[error("{origin}: {source}")]
    Invalid {
        /// The file, or `built-in example`.
        origin: String,
        /// What is wrong, naming the key.
        source: ConfigError,
    },
}

/// Where the configuration came from, for logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A file given with `--config` or `PROGNOS_CONFIG`.
    File(PathBuf),
    /// The example compiled into the binary.
    BuiltIn,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::File(p) => write!(f, "{}", p.display()),
            Origin::BuiltIn => f.write_str("built-in example configuration"),
        }
    }
}

/// A loaded, validated configuration and the overrides that shaped it.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The configuration.
    pub config: Config,
    /// Its origin.
    pub origin: Origin,
    /// Environment variables that overrode keys (names only).
    pub overrides: Vec<String>,
    /// The document with the overrides applied: what other processes that read
    /// the configuration (the Python trainer) must be given, so that they see
    /// what this process sees.
    pub effective: toml::Table,
}

/// Load from `path` (or the built-in example) with overrides from the process environment.
pub fn load(path: Option<&Path>) -> Result<Loaded, SettingsError> {
    load_with_env(path, std::env::vars())
}

/// Load with an explicit environment (tests pass their own).
pub fn load_with_env(
    path: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Loaded, SettingsError> {
    let (text, origin) = match path {
        Some(p) => (
            std::fs::read_to_string(p).map_err(|source| SettingsError::Read {
                path: p.to_path_buf(),
                source,
            })?,
            Origin::File(p.to_path_buf()),
        ),
        None => (EXAMPLE_CONFIG.to_string(), Origin::BuiltIn),
    };
    let invalid = |source| SettingsError::Invalid {
        origin: origin.to_string(),
        source,
    };
    // Parse to a table first so syntax errors point at the file's own lines.
    let mut table: toml::Table = match text.parse() {
        Ok(t) => t,
        Err(_) => return Err(invalid(Config::from_toml_str(&text).unwrap_err())),
    };
    let overrides = apply_env_overrides(&mut table, env).map_err(invalid)?;
    let config = Config::from_table(table.clone()).map_err(invalid)?;
    Ok(Loaded {
        config,
        origin,
        overrides,
        effective: table,
    })
}

fn normalize(key: &str) -> String {
    key.to_ascii_lowercase().replace('-', "_")
}

/// Apply `PROGNOS_A__B__C=value` variables to `table` (keys matched
/// case-insensitively, `-` in keys written as `_`, array elements by index).
/// Values are TOML literals when they parse as one (`0.9`, `true`, `[60, 120]`),
/// strings otherwise. Returns the names of the variables applied.
pub fn apply_env_overrides(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Vec<String>, ConfigError> {
    let mut vars: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with("PROGNOS_") && k.contains("__"))
        .collect();
    // Deterministic order whatever the environment's.
    vars.sort();
    let mut applied = Vec::new();
    for (name, raw) in vars {
        let path: Vec<String> = name["PROGNOS_".len()..]
            .split("__")
            .map(|s| s.to_ascii_lowercase())
            .collect();
        let err = |reason: String| ConfigError {
            key: name.clone(),
            reason,
        };
        if path.iter().any(String::is_empty) {
            return Err(err("empty key segment".into()));
        }
        let value = parse_literal(&raw);
        set_path(table, &path, value).map_err(err)?;
        applied.push(name);
    }
    Ok(applied)
}

fn parse_literal(raw: &str) -> toml::Value {
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    let (head, rest) = path.split_first().expect("non-empty path");
    let key = table
        .keys()
        .find(|k| normalize(k) == *head)
        .cloned()
        .unwrap_or_else(|| head.clone());
    if rest.is_empty() {
        table.insert(key, value);
        return Ok(());
    }
    let slot = table
        .entry(key.clone())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    set_in_value(slot, &key, rest, value)
}

fn set_in_value(
    slot: &mut toml::Value,
    key: &str,
    rest: &[String],
    value: toml::Value,
) -> Result<(), String> {
    match slot {
        toml::Value::Table(t) => set_path(t, rest, value),
        toml::Value::Array(a) => {
            let i: usize = rest[0]
                .parse()
                .map_err(|_| format!("`{key}` is a list; `{}` is not an index", rest[0]))?;
            let len = a.len();
            let elem = a
                .get_mut(i)
                .ok_or_else(|| format!("`{key}` has {len} elements; index {i} is out of range"))?;
            if rest.len() == 1 {
                *elem = value;
                Ok(())
            } else {
                set_in_value(elem, &rest[0], &rest[1..], value)
            }
        }
        _ => Err(format!("`{key}` is a value, not a section")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn built_in_example_loads() {
        let l = load_with_env(None, env(&[])).unwrap();
        assert_eq!(l.origin, Origin::BuiltIn);
        assert_eq!(l.config.orgs.len(), 3);
        assert!(l.overrides.is_empty());
    }

    #[test]
    fn overrides_reach_sections_orgs_and_list_elements() {
        let l = load_with_env(
            None,
            env(&[
                ("PROGNOS_RUNTIME__ALLOWED_LATENESS_MS", "3000"),
                (
                    "PROGNOS_ORGS__ACME_HEAT__PREDICTION__FAILURE_THRESHOLD",
                    "0.75",
                ),
                ("PROGNOS_ORGS__COBALT_THERMAL__SIGNALS__0__COLUMN", "tza"),
                ("PROGNOS_ORGS__BOREALIS_FORGE__FEATURES__LAGS_S", "[30, 90]"),
                ("PROGNOS_ORGS__ACME_HEAT__NAME", "Acme Heat (night shift)"),
                // Not overrides: no double underscore, or another prefix.
                ("PROGNOS_DATA_DIR", "/tmp/x"),
                ("HOME", "/root"),
            ]),
        )
        .unwrap();
        let c = &l.config;
        assert_eq!(c.runtime.allowed_lateness_ms, 3000);
        assert_eq!(c.orgs["acme-heat"].prediction.failure_threshold, 0.75);
        assert_eq!(c.orgs["acme-heat"].name, "Acme Heat (night shift)");
        assert_eq!(c.orgs["cobalt-thermal"].signals[0].column, "tza");
        assert_eq!(c.orgs["borealis-forge"].features.lags_s, vec![30, 90]);
        assert_eq!(l.overrides.len(), 5);
    }

    #[test]
    fn bad_override_names_the_key() {
        let e = load_with_env(
            None,
            env(&[(
                "PROGNOS_ORGS__ACME_HEAT__PREDICTION__FAILURE_THRESHOLD",
                "2",
            )]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("orgs.acme-heat.prediction.failure_threshold"),
            "{e}"
        );
        assert!(e.contains("must be in (0, 1]"), "{e}");

        let e = load_with_env(None, env(&[("PROGNOS_RUNTIME__IDLE_TIMOUT_MS", "5")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("idle_timout_ms"), "{e}");
        assert!(e.contains("unknown field"), "{e}");

        let e = load_with_env(
            None,
            env(&[("PROGNOS_ORGS__ACME_HEAT__SIGNALS__99__COLUMN", "x")]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("PROGNOS_ORGS__ACME_HEAT__SIGNALS__99__COLUMN"),
            "{e}"
        );
        assert!(e.contains("out of range"), "{e}");
    }

    #[test]
    fn file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.toml");
        std::fs::write(&p, "[runtime]\nallowed_lateness_ms = \n").unwrap();
        let e = load_with_env(Some(&p), env(&[])).unwrap_err().to_string();
        assert!(e.contains("bad.toml"), "{e}");
        assert!(e.contains("line 2"), "{e}");
        let missing = dir.path().join("missing.toml");
        let e = load_with_env(Some(&missing), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot read config file"), "{e}");
    }
}
