//! The configuration layer's error type.
//!
//! Every variant renders as one sentence. Errors about a place in a config
//! file carry the file, the 1-based line and column, and the dotted key, so an
//! operator can jump straight to the offending text.

use std::path::PathBuf;

/// Why a configuration, a link name or a PSK could not be used.
///
/// All of these are operator errors: the CLI maps them to exit status 2.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Something at a place in the config file is wrong (syntax, unknown key,
    /// wrong type, or a value that fails validation).
    #[error("{}", render_invalid(file, *line, *column, key, message))]
    Invalid {
        /// The config file.
        file: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column (in characters).
        column: usize,
        /// Dotted key, e.g. `dhcp.pool`; empty for pure syntax errors.
        key: String,
        /// What is wrong, without the location prefix.
        message: String,
    },
    /// The config file could not be read.
    #[error("cannot read config file {path}: {error}")]
    Read {
        /// The config file.
        path: PathBuf,
        /// The underlying I/O error (already part of the message).
        error: std::io::Error,
    },
    /// The link name (from the command line or a file stem) is unusable.
    #[error("invalid link name {name:?}: {reason}")]
    Name {
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: String,
    },
    /// Neither a NAME nor `--config FILE` was given, or they disagree.
    #[error("{0}")]
    Usage(String),
    /// The PSK file could not be read.
    #[error("cannot read PSK file {path}: {error}")]
    PskRead {
        /// The PSK file.
        path: PathBuf,
        /// The underlying I/O error (already part of the message).
        error: std::io::Error,
    },
    /// The PSK file may be read by users other than its owner.
    #[error(
        "PSK file {path} is readable by group or others (mode {mode:04o}); run chmod 600 {path}"
    )]
    PskMode {
        /// The PSK file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The PSK file does not hold base64 of exactly 32 bytes.
    #[error("PSK file {path} is malformed: {reason}")]
    PskFile {
        /// The PSK file.
        path: PathBuf,
        /// What is wrong with its contents.
        reason: String,
    },
    /// A PSK string does not hold base64 of exactly 32 bytes.
    #[error("invalid PSK: {0}")]
    PskEncoding(String),
}

fn render_invalid(
    file: &std::path::Path,
    line: usize,
    column: usize,
    key: &str,
    message: &str,
) -> String {
    if key.is_empty() {
        format!("{}:{line}:{column}: {message}", file.display())
    } else {
        format!("{}:{line}:{column}: {key}: {message}", file.display())
    }
}
