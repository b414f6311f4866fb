//! Configuration: PgDoorman's YAML (primary) or TOML file, chosen by extension, parsed into
//! typed structs and validated as a whole. Owns no runtime state; the app holds a snapshot.

pub mod emit;
mod include;
mod model;
pub mod pgbouncer;
pub mod reference;
pub mod startup_params;
pub mod tls;
pub mod units;
mod users;
mod validate;

pub use model::{AuthQuery, Config, General, Pool, PoolMode, ServerTlsMode, Talos, TlsMode, User};
pub use units::{ByteSize, Millis};
pub use users::unguessable_md5;

/// Database names that reach the admin console rather than a pool (PgDoorman's and
/// PgBouncer's); the admin module serves them.
pub const ADMIN_DATABASES: [&str; 2] = ["pgdoorman", "pgbouncer"];

use std::path::Path;

/// Why a config could not be used. Messages name the key path and the reason.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// File path.
        path: String,
        /// OS error.
        source: std::io::Error,
    },
    /// The extension is neither .yaml/.yml, .toml nor .ini.
    #[error("config file {0} must end in .yaml, .yml, .toml or .ini (PgBouncer's format)")]
    Extension(String),
    /// Syntax or type error reported by the parser (with line/column where it knows them).
    #[error("config file {path}: {message}")]
    Parse {
        /// File path.
        path: String,
        /// Parser message.
        message: String,
    },
    /// One or more keys had bad values or are unknown/unsupported.
    #[error("config file {path} is invalid:\n  {}", .problems.join("\n  "))]
    Invalid {
        /// File path.
        path: String,
        /// One line per problem, each starting with the key path.
        problems: Vec<String>,
    },
}

/// Reads, parses and validates the config at `path`: pg_doorman's YAML or TOML, or a
/// PgBouncer `.ini` (imported through [`pgbouncer::import`]; what it drops is in `warnings`).
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let shown = path.display().to_string();
    if pgbouncer::is_pgbouncer_file(path) {
        return load_pgbouncer(path);
    }
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: shown.clone(),
        source,
    })?;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let config = match ext.as_str() {
        "yaml" | "yml" => parse_yaml(&text),
        "toml" => parse_toml(&text),
        _ => return Err(ConfigError::Extension(shown)),
    }
    .map_err(|message| ConfigError::Parse {
        path: shown.clone(),
        message,
    })?;
    // Parsed once as it is (errors keep their line numbers); with includes, again as the
    // merged tree.
    let mut notes = Vec::new();
    let config = if config.include.as_ref().is_none_or(|i| i.files.is_empty()) {
        config
    } else {
        include::merged(path)
            .and_then(|(tree, w)| {
                notes = w;
                serde_json::from_value(tree)
                    .map_err(|e| format!("after merging include.files: {e}"))
            })
            .map_err(|message| ConfigError::Parse {
                path: shown.clone(),
                message,
            })?
    };
    let problems = validate::check(&config);
    if problems.is_empty() {
        let mut config = config;
        config.source = Some(path.to_path_buf());
        notes.extend(validate::warnings(&config));
        config.warnings = notes;
        Ok(config)
    } else {
        Err(ConfigError::Invalid {
            path: shown,
            problems,
        })
    }
}

/// A PgBouncer ini translated, then validated as the YAML it became (problems name our keys,
/// and the YAML's comments name the PgBouncer settings they came from: `--print-config`).
fn load_pgbouncer(path: &Path) -> Result<Config, ConfigError> {
    let shown = path.display().to_string();
    let imported = pgbouncer::import(path).map_err(|problems| ConfigError::Invalid {
        path: shown.clone(),
        problems,
    })?;
    let mut config = parse_yaml(&imported.yaml()).map_err(|message| ConfigError::Parse {
        path: shown.clone(),
        message: format!("the imported config does not parse (a pg_doorman bug): {message}"),
    })?;
    let problems = validate::check(&config);
    if !problems.is_empty() {
        return Err(ConfigError::Invalid {
            path: shown,
            problems,
        });
    }
    config.source = Some(path.to_path_buf());
    let mut warnings = imported.notes;
    warnings.extend(validate::warnings(&config));
    config.warnings = warnings;
    Ok(config)
}

/// Parses YAML text (no validation).
pub fn parse_yaml(text: &str) -> Result<Config, String> {
    serde_saphyr::from_str(text).map_err(|e| e.to_string())
}

/// Parses TOML text (no validation).
pub fn parse_toml(text: &str) -> Result<Config, String> {
    toml::from_str(text).map_err(|e| e.to_string())
}

impl Config {
    /// Parses YAML and validates; used by tests and `-t`.
    pub fn from_yaml(text: &str) -> Result<Config, String> {
        let c = parse_yaml(text)?;
        let problems = validate::check(&c);
        if problems.is_empty() {
            Ok(c)
        } else {
            Err(problems.join("\n"))
        }
    }
}

#[cfg(test)]
mod tests;
