//! Peer drop-ins (SPEC §4): besides `NAME.toml`, every `NAME.d/*.toml` may
//! hold `[[peer]]` tables and nothing else; they join the main file's peers
//! in lexical order of their file names. This is how configuration
//! management (one file per thing) and `bridge-ctl invite` add a site
//! without editing the main file.
//!
//! This module finds and reads the files; they are validated with the main
//! file (`validate`), each error naming the drop-in's own file, line, column
//! and key. Names starting with `.` are skipped (editors' and tools' scratch
//! files, and the temporary files of atomic writes), as is anything that
//! is not a regular file once symbolic links are followed.

use std::path::{Path, PathBuf};

use super::ConfigError;

/// A drop-in file as read: where it is and what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropIn {
    /// The file (absolute when the main file's path is).
    pub path: PathBuf,
    /// Its text.
    pub text: String,
}

/// The drop-in directory of link `name` whose main file is `config`:
/// `NAME.d` beside it.
pub fn dir(config: &Path, name: &str) -> PathBuf {
    config
        .parent()
        .unwrap_or(Path::new(""))
        .join(format!("{name}.d"))
}

/// The drop-in files of `dir` that are read, in the order they are merged
/// (lexical, by file name). A missing directory has none.
pub fn files(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let dir_error = |source| ConfigError::DropInDir {
        path: dir.to_owned(),
        source,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(dir_error(e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(dir_error)?;
        let name = entry.file_name();
        let name = name.as_encoded_bytes();
        if name.starts_with(b".") || !name.ends_with(b".toml") {
            continue;
        }
        let path = entry.path();
        if path.is_file() {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// Reads every drop-in of `dir` ([`files`]).
pub(super) fn read_all(dir: &Path) -> Result<Vec<DropIn>, ConfigError> {
    files(dir)?
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            Ok(DropIn { path, text })
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn only_visible_toml_files_in_lexical_order() {
        let d = std::env::temp_dir().join(format!("tb-dropin-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        assert!(files(&d).unwrap().is_empty(), "no directory, no drop-ins");
        std::fs::create_dir_all(d.join("sub.toml")).unwrap();
        for f in [
            "b.toml",
            "a.toml",
            "10.toml",
            ".a.toml.tmp",
            ".x.toml",
            "c.psk",
            "d.toml~",
        ] {
            std::fs::write(d.join(f), "").unwrap();
        }
        let names: Vec<String> = files(&d)
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["10.toml", "a.toml", "b.toml"]);
        assert_eq!(
            dir(Path::new("/etc/tapbridge/hq.toml"), "hq"),
            Path::new("/etc/tapbridge/hq.d")
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_hub_without_peers_is_read_for_its_first_invite_only() {
        let d = std::env::temp_dir().join(format!("tb-dropin-load-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let main = d.join("hq.toml");
        std::fs::write(&main, "[interface]\n[tunnel]\nhub = true\n").unwrap();
        let err = super::super::Config::load(&main).unwrap_err();
        let err = crate::error::Chain(&err).to_string();
        assert!(err.contains("at least one [[peer]] is required"), "{err}");
        let c = super::super::Config::load_without_peers(&main).unwrap();
        assert!(c.peers.is_empty());
        std::fs::create_dir(d.join("hq.d")).unwrap();
        std::fs::write(
            d.join("hq.d/b.toml"),
            "[[peer]]\nname = \"b\"\npsk_file = \"b.psk\"\n",
        )
        .unwrap();
        let c = super::super::Config::load(&main).unwrap();
        assert_eq!(c.peers[0].file, d.join("hq.d/b.toml"));
        std::fs::remove_dir_all(&d).unwrap();
    }

    const MAIN: &str = "/etc/tapbridge/hq.toml";
    const HEAD: &str = "[interface]\n[tunnel]\nhub = true\n";

    fn drop_in(name: &str, text: &str) -> DropIn {
        DropIn {
            path: PathBuf::from(format!("/etc/tapbridge/hq.d/{name}")),
            text: text.to_owned(),
        }
    }

    fn parse(main: &str, dropins: &[DropIn]) -> Result<super::super::Config, String> {
        super::super::Config::parse_with("hq", Path::new(MAIN), main, dropins)
            .map_err(|e| crate::error::Chain(&e).to_string())
    }

    #[test]
    fn drop_in_peers_join_the_main_files_in_order() {
        let main = format!("{HEAD}psk_file = \"hq.psk\"\n[[peer]]\nname = \"a\"\n");
        let c = parse(
            &main,
            &[
                drop_in(
                    "b.toml",
                    "[[peer]]\nname = \"b\"\npsk_file = \"b.psk\"\nmax_macs = 10\n",
                ),
                drop_in(
                    "c.toml",
                    "# two in one file\n[[peer]]\nname = \"c\"\n[[peer]]\nname = \"d\"\n",
                ),
                drop_in("empty.toml", "# nothing yet\n"),
            ],
        )
        .unwrap();
        let names: Vec<&str> = c.peers.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c", "d"]);
        assert_eq!(c.peers[0].file, Path::new(MAIN));
        assert_eq!(c.peers[1].file, Path::new("/etc/tapbridge/hq.d/b.toml"));
        // A drop-in's relative paths are relative to its own directory, and
        // its key file's errors point into it.
        let key = c.key_file(1).unwrap();
        assert_eq!(key.path, Path::new("/etc/tapbridge/hq.d/b.psk"));
        assert_eq!(key.named_in, Path::new("/etc/tapbridge/hq.d/b.toml"));
        assert_eq!((key.line, key.column), (3, 12));
        assert_eq!(
            c.key_file(2).unwrap().path,
            Path::new("/etc/tapbridge/hq.psk")
        );
        // Their settings are part of what reload compares and prints.
        let without = parse(&main, &[]).unwrap();
        assert_eq!(
            without.written.changes(&c.written, &["peer.b"]),
            [
                "peer.b.max_macs: (default) -> 10",
                "peer.b.name: (default) -> \"b\"",
                "peer.b.psk_file: (default) -> \"b.psk\""
            ]
        );
        // A main file without peers is fine when drop-ins have them.
        let bare = format!("{HEAD}psk_file = \"hq.psk\"\n");
        assert_eq!(
            parse(&bare, &[drop_in("b.toml", "[[peer]]\nname = \"b\"\n")])
                .unwrap()
                .peers
                .len(),
            1
        );
        let err = parse(&bare, &[drop_in("e.toml", "")]).unwrap_err();
        assert!(
            err.contains("at least one [[peer]] is required, in this file or in a peer drop-in"),
            "{err}"
        );
    }

    #[test]
    fn drop_in_errors_name_the_drop_in() {
        let main = format!("{HEAD}psk_file = \"hq.psk\"\n[[peer]]\nname = \"a\"\n");
        let one = |text: &str| parse(&main, &[drop_in("b.toml", text)]).unwrap_err();
        let err = one("[[peer]]\nname = \"b\"\nbogus = 1\n");
        assert!(
            err.starts_with("/etc/tapbridge/hq.d/b.toml:3:1: peer.bogus: unknown field"),
            "{err}"
        );
        let err = one("[[peer]]\nname = \"b\"\nendpoint = \"nowhere\"\n");
        assert!(
            err.starts_with("/etc/tapbridge/hq.d/b.toml:3:12: peer.endpoint: "),
            "{err}"
        );
        // Anything but [[peer]] belongs in the main file.
        let err = one("[tunnel]\nhub = false\n");
        assert!(
            err.starts_with("/etc/tapbridge/hq.d/b.toml:1:2: tunnel: a peer drop-in holds [[peer]] tables and nothing else; tunnel belongs in the main file hq.toml"),
            "{err}"
        );
        let err = one("[[peer]]\nname = \"b\"\n[dhcp]\nenabled = false\n");
        assert!(
            err.starts_with("/etc/tapbridge/hq.d/b.toml:3:2: dhcp: a peer drop-in holds"),
            "{err}"
        );
        let err = one("[peer]\nname = \"b\"\n");
        assert!(err.starts_with("/etc/tapbridge/hq.d/b.toml:"), "{err}");
        assert!(err.contains("write [[peer]] (double brackets)"), "{err}");
        // A name defined twice names both files.
        let err = one("[[peer]]\nname = \"a\"\n");
        assert_eq!(
            err,
            "/etc/tapbridge/hq.d/b.toml:2:8: peer.name: peer name \"a\" is used twice: it is defined in /etc/tapbridge/hq.toml too"
        );
        let err = parse(
            &main,
            &[
                drop_in("b.toml", "[[peer]]\nname = \"x\"\n"),
                drop_in("c.toml", "\n[[peer]]\nname = \"x\"\n"),
            ],
        )
        .unwrap_err();
        assert_eq!(
            err,
            "/etc/tapbridge/hq.d/c.toml:3:8: peer.name: peer name \"x\" is used twice: it is defined in /etc/tapbridge/hq.d/b.toml too"
        );
        // Its own name, and a peer without a key where the main file has none.
        let err = one("[[peer]]\nname = \"hq\"\n");
        assert!(
            err.contains("b.toml:2:8: peer.name: \"hq\" is this site's own name"),
            "{err}"
        );
        let err = parse(
            &format!("{HEAD}[[peer]]\nname = \"a\"\npsk_file = \"a.psk\"\n"),
            &[drop_in("b.toml", "[[peer]]\nname = \"b\"\n")],
        )
        .unwrap_err();
        assert!(err.starts_with("/etc/tapbridge/hq.d/b.toml:1:1: peer.psk_file: this required key is missing: the main file sets no tunnel.psk_file"), "{err}");
    }
}
