//! The pre-shared key: 32 random bytes kept in their own file as base64.
//!
//! A key file holds one key, or two on separate lines during a rotation
//! (the first is used to initiate, either is accepted).
//! [`Psk`] zeroizes its bytes when dropped and never prints them in `Debug`.
//! [`Psk::load_keys`] refuses a file that group or others may read, so a
//! careless `chmod` cannot silently expose the key. The file is read into a
//! fixed buffer that is wiped afterwards; copies the kernel, the allocator or
//! the hash functions may leave behind are beyond our reach (best effort, as
//! in any program that does not control its memory).

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt};
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::ConfigError;

/// Length of the key in bytes.
pub const PSK_LEN: usize = 32;

/// Longest PSK file we read: a key plus generous whitespace.
const MAX_FILE: u64 = 1024;

/// A 32-byte pre-shared key, zeroized on drop.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct Psk([u8; PSK_LEN]);

impl std::fmt::Debug for Psk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Psk(<redacted>)")
    }
}

impl Psk {
    /// Reads a key file and returns its first key. See
    /// [`load_keys`](Self::load_keys).
    pub fn load(path: &Path) -> Result<Psk, ConfigError> {
        let mut keys = Psk::load_keys(path)?;
        Ok(keys.swap_remove(0))
    }

    /// Reads a key file: one key, or two on separate lines (a rotation: the
    /// first initiates, either is accepted). Call at start-up and on reload.
    ///
    /// Refuses a file that is missing, not a regular file, has any group or
    /// other permission bits set, belongs to someone other than root and the
    /// reader, or does not hold one or two lines of base64
    /// of exactly 32 bytes (blank lines and surrounding whitespace are
    /// ignored; an error names the line).
    pub fn load_keys(path: &Path) -> Result<Vec<Psk>, ConfigError> {
        let read_err = |source| ConfigError::PskRead {
            path: path.to_owned(),
            source,
        };
        let file = File::open(path).map_err(read_err)?;
        let meta = file.metadata().map_err(read_err)?;
        if !meta.is_file() {
            return Err(ConfigError::PskFile {
                path: path.to_owned(),
                problem: PskProblem::NotAFile,
            });
        }
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(ConfigError::PskMode {
                path: path.to_owned(),
                mode,
            });
        }
        let reader = nix::unistd::geteuid().as_raw();
        if meta.uid() != 0 && meta.uid() != reader {
            return Err(ConfigError::PskOwner {
                path: path.to_owned(),
                owner: meta.uid(),
                reader,
            });
        }
        // A fixed buffer, wiped on drop: no growing String that leaves
        // copies of the key behind in freed memory.
        let mut buf = Zeroizing::new([0u8; MAX_FILE as usize + 1]);
        let mut len = 0;
        let mut reader = file.take(MAX_FILE + 1);
        loop {
            match reader.read(&mut buf[len..]) {
                Ok(0) => break,
                Ok(n) => len += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(read_err(e)),
            }
            if len == buf.len() {
                break;
            }
        }
        let bad = |problem: PskProblem| ConfigError::PskFile {
            path: path.to_owned(),
            problem,
        };
        if len as u64 > MAX_FILE {
            return Err(bad(PskProblem::FileTooLong));
        }
        let text = std::str::from_utf8(&buf[..len]).map_err(|_| bad(PskProblem::NotText))?;
        let lines: Vec<(usize, &str)> = text
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l.trim()))
            .filter(|(_, l)| !l.is_empty())
            .collect();
        match lines.len() {
            0 => return Err(bad(PskProblem::Empty)),
            1 | 2 => {}
            n => return Err(bad(PskProblem::TooManyKeys(n))),
        }
        let mut keys = Vec::with_capacity(lines.len());
        for &(line, l) in &lines {
            let key = decode(l).map_err(|problem| {
                bad(if lines.len() == 1 {
                    problem
                } else {
                    PskProblem::Line {
                        line,
                        problem: Box::new(problem),
                    }
                })
            })?;
            keys.push(key);
        }
        if keys.len() == 2 && keys[0] == keys[1] {
            return Err(bad(PskProblem::SameKeys));
        }
        Ok(keys)
    }

    /// Decodes a base64 key such as `bridge-ctl genpsk` prints.
    pub fn from_base64(s: &str) -> Result<Psk, ConfigError> {
        decode(s).map_err(ConfigError::PskEncoding)
    }

    /// Wraps raw key bytes (for tests and in-memory setups).
    pub fn from_bytes(bytes: [u8; PSK_LEN]) -> Psk {
        Psk(bytes)
    }

    /// A fresh key from the operating system's random source.
    pub fn generate() -> Result<Psk, getrandom::Error> {
        let mut key = Psk([0; PSK_LEN]);
        getrandom::fill(&mut key.0)?;
        Ok(key)
    }

    /// The key bytes, for the key schedule.
    pub fn as_bytes(&self) -> &[u8; PSK_LEN] {
        &self.0
    }

    /// The key as standard padded base64 (44 characters).
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }
}

/// Why a key file or a key string holds no usable key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PskProblem {
    /// The path is a directory, device or other non-file.
    #[error("it is not a regular file")]
    NotAFile,
    /// Longer than any key file needs to be.
    #[error("it is longer than {MAX_FILE} bytes")]
    FileTooLong,
    /// Not UTF-8.
    #[error("it is not text; write the output of `bridge-ctl genpsk` into it")]
    NotText,
    /// Nothing but whitespace.
    #[error("it is empty; write the output of `bridge-ctl genpsk` into it")]
    Empty,
    /// More keys than a rotation uses.
    #[error("it holds {0} keys; a key file holds one, or two during a rotation")]
    TooManyKeys(usize),
    /// A rotation file whose two keys are one.
    #[error("its two keys are the same")]
    SameKeys,
    /// What is wrong with line `line` of a two-key file.
    #[error("line {line}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        #[source]
        problem: Box<PskProblem>,
    },
    /// Not base64 (the decoder's reason is part of the sentence).
    #[error("it is not valid base64 ({0})")]
    NotBase64(base64::DecodeError),
    /// Base64 of more bytes than a key.
    #[error("it does not decode to exactly {PSK_LEN} bytes")]
    TooManyBytes,
    /// Base64 of fewer bytes than a key.
    #[error("it decodes to {0} bytes, not {PSK_LEN}; use `bridge-ctl genpsk`")]
    WrongLength(usize),
}

fn decode(text: &str) -> Result<Psk, PskProblem> {
    let text = text.trim();
    if text.is_empty() {
        return Err(PskProblem::Empty);
    }
    // Room for one byte too many, so "too long" is told apart from garbage.
    let mut buf = Zeroizing::new([0u8; PSK_LEN + 3]);
    let n = match STANDARD.decode_slice(text, &mut buf[..]) {
        Ok(n) => n,
        Err(base64::DecodeSliceError::OutputSliceTooSmall) => {
            return Err(PskProblem::TooManyBytes);
        }
        Err(base64::DecodeSliceError::DecodeError(e)) => {
            return Err(PskProblem::NotBase64(e));
        }
    };
    if n != PSK_LEN {
        return Err(PskProblem::WrongLength(n));
    }
    let mut key = Psk([0; PSK_LEN]);
    key.0.copy_from_slice(&buf[..PSK_LEN]);
    Ok(key)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::error::Chain;
    use std::os::unix::fs::OpenOptionsExt;
    use std::path::PathBuf;

    /// A file under the temp dir, unique to this test and process, removed on drop.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(tag: &str, contents: &str, mode: u32) -> TempFile {
            let path =
                std::env::temp_dir().join(format!("tapbridge-psk-{}-{tag}", std::process::id()));
            let _ = std::fs::remove_file(&path);
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(&path)
                .expect("create temp file");
            std::io::Write::write_all(&mut f, contents.as_bytes()).expect("write temp file");
            // The umask may have cleared bits we want to test.
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                .expect("chmod temp file");
            TempFile(path)
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    #[test]
    fn loads_a_private_key_file() {
        let f = TempFile::new("ok", &format!("  {KEY}\n"), 0o600);
        let psk = Psk::load(&f.0).expect("load");
        let expected: Vec<u8> = (0u8..32).collect();
        assert_eq!(psk.as_bytes().as_slice(), expected.as_slice());
        assert_eq!(psk.to_base64(), KEY);
    }

    #[test]
    fn refuses_group_or_world_readable() {
        for (tag, mode) in [("g", 0o640), ("o", 0o604), ("gw", 0o620)] {
            let f = TempFile::new(tag, KEY, mode);
            let err = Psk::load(&f.0).expect_err("mode accepted");
            let err = Chain(&err).to_string();
            assert!(err.contains(&format!("(mode {mode:04o})")), "{err}");
            assert!(err.contains("readable by group or others"), "{err}");
            assert!(
                err.contains(&format!("chmod 600 {}", f.0.display())),
                "{err}"
            );
        }
        let f = TempFile::new("ro", KEY, 0o400);
        assert!(Psk::load(&f.0).is_ok());
    }

    #[test]
    fn refuses_missing_and_malformed_files() {
        let missing = std::env::temp_dir().join("tapbridge-psk-does-not-exist");
        let err = Psk::load(&missing).expect_err("missing accepted");
        let err = Chain(&err).to_string();
        assert!(err.starts_with("cannot read PSK file"), "{err}");

        for (tag, text, want) in [
            ("empty", "", "empty"),
            (
                "short",
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg==",
                "31 bytes",
            ),
            (
                "long",
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g",
                "33 bytes",
            ),
            ("junk", "not base64 at all!", "not valid base64"),
        ] {
            let f = TempFile::new(tag, text, 0o600);
            let err = Psk::load(&f.0).expect_err("bad key accepted");
            let err = Chain(&err).to_string();
            assert!(err.contains(&f.0.display().to_string()), "{err}");
            assert!(err.contains(want), "{tag}: {err}");
        }
    }

    const KEY2: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

    #[test]
    fn a_rotation_file_holds_two_keys() {
        let f = TempFile::new("two", &format!("{KEY2}\n\n  {KEY}\n"), 0o600);
        let keys = Psk::load_keys(&f.0).expect("two keys");
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].to_base64(), KEY2, "the first initiates");
        assert_eq!(keys[1].to_base64(), KEY);
        assert_eq!(Psk::load(&f.0).expect("first").to_base64(), KEY2);
        for (tag, text, want) in [
            ("three", format!("{KEY}\n{KEY2}\n{KEY}\n"), "holds 3 keys"),
            ("same", format!("{KEY}\n{KEY}\n"), "two keys are the same"),
            (
                "bad2",
                format!("{KEY}\nnope\n"),
                "line 2: it decodes to 3 bytes",
            ),
        ] {
            let f = TempFile::new(tag, &text, 0o600);
            let err = Psk::load_keys(&f.0).expect_err("accepted");
            let err = Chain(&err).to_string();
            assert!(err.contains(want), "{tag}: {err}");
        }
    }

    #[test]
    fn base64_round_trip_and_randomness() {
        let a = Psk::generate().expect("random");
        let b = Psk::generate().expect("random");
        assert_ne!(a, b);
        let text = a.to_base64();
        assert_eq!(text.len(), 44);
        assert_eq!(Psk::from_base64(&text).expect("decode"), a);
        assert!(Psk::from_base64("AAAA").is_err());
        assert_eq!(format!("{a:?}"), "Psk(<redacted>)");
    }
}
