//! The configuration layer's error types.
//!
//! Every error renders as one sentence once its causes are appended
//! ([`crate::error::Chain`], or `{:#}` in the binary). Errors about a place
//! in a config file carry the file, the 1-based line and column, and the
//! dotted key, so an operator can jump straight to the offending text; what
//! is wrong there is their source, a [`Problem`].

use std::path::{Path, PathBuf};

use super::psk::PskProblem;
use super::value::ValueError;
use crate::responder::ResponderError;

/// Why a configuration, a link name or a PSK could not be used.
///
/// All of these are operator errors: the CLI maps them to exit status 2.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Something at a place in the config file is wrong (syntax, unknown key,
    /// wrong type, or a value that fails validation).
    #[error("{}", place(file, *line, *column, key))]
    Invalid {
        /// The config file.
        file: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column (in characters).
        column: usize,
        /// Dotted key, e.g. `dhcp.pool`; empty for pure syntax errors.
        key: String,
        /// What is wrong there (boxed: errors stay small on the `Ok` path).
        #[source]
        problem: Box<Problem>,
    },
    /// The config file could not be read.
    #[error("cannot read config file {}", path.display())]
    Read {
        /// The config file.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The peer drop-in directory exists but cannot be listed.
    #[error("cannot read the peer drop-in directory {}", path.display())]
    DropInDir {
        /// The directory (`NAME.d`).
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The link name (from the command line or a file stem) is unusable.
    #[error("invalid link name {name:?}: {reason}{}", stem_note(stem_of.as_deref()))]
    Name {
        /// The rejected name.
        name: String,
        /// Why it was rejected (a reason the sentence goes on after, so
        /// part of this message rather than a source).
        reason: Box<ValueError>,
        /// The config file whose stem it is, if it came from one.
        stem_of: Option<PathBuf>,
    },
    /// Neither a NAME nor `--config FILE` was given.
    #[error("a link NAME or --config FILE is required")]
    NoLink,
    /// A NAME and `--config FILE` were both given and disagree.
    #[error(
        "link NAME {name:?} does not match the stem {stem:?} of config file {}",
        path.display()
    )]
    StemMismatch {
        /// The NAME given.
        name: String,
        /// The stem of the file given.
        stem: String,
        /// The file given.
        path: PathBuf,
    },
    /// A peer without a key file (validation rules this out).
    #[error("peer {peer:?} has no key file (validation should have caught this)")]
    NoKeyFile {
        /// The peer.
        peer: String,
    },
    /// The PSK file could not be read.
    #[error("cannot read PSK file {}", path.display())]
    PskRead {
        /// The PSK file.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The PSK file may be read by users other than its owner.
    #[error(
        "PSK file {} is readable by group or others (mode {mode:04o}); run chmod 600 {}",
        path.display(),
        path.display()
    )]
    PskMode {
        /// The PSK file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The PSK file belongs to a user other than root and the one reading it.
    #[error(
        "PSK file {} belongs to user {owner}, not to root or to the user reading it ({reader}), \
         who could replace the key; run chown root {}",
        path.display(),
        path.display()
    )]
    PskOwner {
        /// The PSK file.
        path: PathBuf,
        /// Its owner's uid.
        owner: u32,
        /// The reading process's effective uid.
        reader: u32,
    },
    /// The PSK file does not hold one or two keys of base64 of exactly 32 bytes.
    #[error("PSK file {} is malformed", path.display())]
    PskFile {
        /// The PSK file.
        path: PathBuf,
        /// What is wrong with its contents.
        #[source]
        problem: PskProblem,
    },
    /// A PSK string does not hold base64 of exactly 32 bytes.
    #[error("invalid PSK")]
    PskEncoding(#[source] PskProblem),
}

/// What is wrong at a place in the config file: the source of
/// [`ConfigError::Invalid`].
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    /// The text is not TOML of the expected shape (syntax, unknown key,
    /// wrong type); the message is the parser's, on one line.
    #[error("{}", toml_message(.0))]
    Syntax(Box<toml::de::Error>),
    /// A value that does not parse or is not allowed.
    #[error(transparent)]
    Value(#[from] ValueError),
    /// Element `n` (1-based) of an array value.
    #[error("element {n}")]
    Element {
        /// Which element, from 1.
        n: usize,
        /// What is wrong with it.
        #[source]
        error: ValueError,
    },
    /// The interface name derived from the link name is not usable.
    #[error("the default name {name:?} is not usable ({reason}); set interface.name")]
    DefaultIfname {
        /// `tb-NAME`.
        name: String,
        /// Why not (part of the sentence, so not a source).
        reason: ValueError,
    },
    /// The key file named here cannot be used.
    #[error(transparent)]
    KeyFile(Box<ConfigError>),
    /// The responder cannot be built from these settings.
    #[error(transparent)]
    Responder(#[from] ResponderError),
    /// A hook's file (or its directory) cannot be examined.
    #[error("hook {}", path.display())]
    Hook {
        /// The hook.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A hook that is not a regular file.
    #[error("hook {} is not a regular file", path.display())]
    HookNotAFile {
        /// The hook.
        path: PathBuf,
    },
    /// A hook without execute permission.
    #[error(
        "hook {} is not executable (mode {mode:04o}); run chmod 755 {}",
        path.display(),
        path.display()
    )]
    HookNotExecutable {
        /// The hook.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A hook that group or others may change (the daemon runs it as root).
    #[error(
        "hook {} may be changed by group or others (mode {mode:04o}); run chmod go-w {}",
        path.display(),
        path.display()
    )]
    HookWritable {
        /// The hook.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A hook in a directory everyone may write.
    #[error(
        "hook {} is in {}, which everyone may write; move it to a directory only root may change",
        path.display(),
        dir.display()
    )]
    HookDirWritable {
        /// The hook.
        path: PathBuf,
        /// Its directory.
        dir: PathBuf,
    },
    /// `interface.bridge` names no interface on this machine.
    #[error(
        "there is no bridge {name:?} on this machine (create it first, e.g. ip link add {name} type bridge)"
    )]
    NoBridge {
        /// The bridge.
        name: String,
    },
    /// `interface.bridge` names an interface that is not a bridge.
    #[error("{name:?} is an interface but not a bridge")]
    NotABridge {
        /// The interface.
        name: String,
    },
    /// A control group that does not exist.
    #[error("group {name:?} does not exist (create it with groupadd)")]
    NoGroup {
        /// The group.
        name: String,
    },
    /// The group database could not be read.
    #[error("cannot look up group {name:?}")]
    GroupLookup {
        /// The group.
        name: String,
        /// Why.
        source: nix::Error,
    },
    /// A rule about how settings fit together (ranges, duplicates, required
    /// keys): the sentence says which and why.
    #[error("{0}")]
    Rule(String),
}

impl From<String> for Problem {
    fn from(rule: String) -> Problem {
        Problem::Rule(rule)
    }
}

impl From<&str> for Problem {
    fn from(rule: &str) -> Problem {
        Problem::Rule(rule.to_owned())
    }
}

/// `FILE:LINE:COL` and, if there is one, `: KEY`.
fn place(file: &Path, line: usize, column: usize, key: &str) -> String {
    if key.is_empty() {
        format!("{}:{line}:{column}", file.display())
    } else {
        format!("{}:{line}:{column}: {key}", file.display())
    }
}

/// The TOML parser's message on one line, without its rendering of the input.
fn toml_message(e: &toml::de::Error) -> String {
    e.message().trim().replace(char::is_control, " ")
}

/// Where a rejected link name came from, if it is a file's stem.
fn stem_note(stem_of: Option<&Path>) -> String {
    stem_of
        .map(|p| format!(" (it is the stem of config file {})", p.display()))
        .unwrap_or_default()
}
