//! Where the log goes and how its lines look.
//!
//! * At a terminal: coloured lines on stderr.
//! * Under systemd (`JOURNAL_STREAM` names stderr): every line starts with
//!   its sd-daemon syslog priority, `<3>` error, `<4>` warn, `<6>` info,
//!   `<7>` debug and trace, so `journalctl -p warning` can filter; no
//!   timestamp, level or module: the journal has the time and the priority.
//! * A daemon `link up` detached (`--log-file FILE`, given by `link up`
//!   itself): plain lines into FILE, which is renamed to `FILE.1` (replacing
//!   the previous one) when it would grow past [`LOG_FILE_MAX`].

use std::fmt;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

use crate::cli::UsageError;

/// A detached daemon's log file is rotated when it would grow past this.
pub(crate) const LOG_FILE_MAX: u64 = 4 << 20;

/// Sets up the log for this process: the level filter from `--log-level`
/// (else `RUST_LOG`, else info) and the destination described above.
pub(crate) fn init(level: Option<&str>, log_file: Option<&Path>) -> anyhow::Result<()> {
    use tracing_subscriber::EnvFilter;
    let filter = match level {
        Some(level) => {
            let bad = || {
                UsageError(format!(
                    "invalid --log-level {level:?}; use error, warn, info, debug, trace or off \
                     (optionally as target=level,...)"
                ))
            };
            if !is_log_filter(level) {
                return Err(bad().into());
            }
            EnvFilter::try_new(level).map_err(|_| bad())?
        }
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    // Each `try_init` fails only if a subscriber is already installed,
    // which is harmless.
    if let Some(path) = log_file {
        let file = RotatingFile::new(path.to_path_buf(), LOG_FILE_MAX);
        let _ = builder.with_ansi(false).with_writer(file).try_init();
    } else if under_journald() {
        // The journal has the time and the priority (colours by it, filters
        // on it); the line is the message and its fields.
        let format = Priority(
            tracing_subscriber::fmt::format()
                .without_time()
                .with_level(false)
                .with_target(false),
        );
        let _ = builder
            .with_ansi(false)
            .event_format(format)
            .with_writer(std::io::stderr)
            .try_init();
    } else {
        // Colour only for a person at a terminal.
        let _ = builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(std::io::stderr)
            .try_init();
    }
    Ok(())
}

/// Whether `s` is `LEVEL` or `target=LEVEL,...` (EnvFilter itself accepts
/// almost any string as a target name, so a typo would silently log nothing).
fn is_log_filter(s: &str) -> bool {
    const LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];
    s.split(',').all(|directive| {
        let (target, level) = directive.rsplit_once('=').unwrap_or(("", directive));
        LEVELS.iter().any(|l| l.eq_ignore_ascii_case(level))
            && target
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '-'))
    })
}

/// Whether stderr is journald's stream: `JOURNAL_STREAM` is set and names
/// stderr's device and inode, as systemd documents (a child that inherited
/// the variable but writes elsewhere must not prefix).
fn under_journald() -> bool {
    let Some(var) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(st) = nix::sys::stat::fstat(std::io::stderr()) else {
        return false;
    };
    #[allow(clippy::useless_conversion)] // the field types differ between targets
    let (dev, ino) = (u64::from(st.st_dev), u64::from(st.st_ino));
    journal_stream_is(var.to_str().unwrap_or(""), dev, ino)
}

/// Whether `JOURNAL_STREAM`'s value `var` (`DEVICE:INODE`, decimal) names
/// the file with `dev` and `ino`.
fn journal_stream_is(var: &str, dev: u64, ino: u64) -> bool {
    let Some((d, i)) = var.split_once(':') else {
        return false;
    };
    d.parse::<u64>() == Ok(dev) && i.parse::<u64>() == Ok(ino)
}

/// The sd-daemon(3) priority prefix of a level.
fn priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

/// An event format that puts `<N>` (the syslog priority) before each line
/// of what `F` writes.
struct Priority<F>(F);

impl<S, N, F> FormatEvent<S, N> for Priority<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let n = priority(*event.metadata().level());
        // journald reads a stream line by line: a message of several lines
        // (a hook's output, an error chain) needs the prefix on each.
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        for l in line.lines() {
            writeln!(writer, "<{n}>{l}")?;
        }
        Ok(())
    }
}

/// The detached daemon's log file, capped in size: before a write that
/// would take it past `max`, it is renamed to `PATH.1` and a new one is
/// opened. The new file also becomes stderr, so a panic message lands in
/// the current file too.
#[derive(Clone)]
struct RotatingFile(Arc<Mutex<Rotating>>);

struct Rotating {
    path: PathBuf,
    max: u64,
    /// Bytes in the current file (as far as this process knows).
    size: u64,
    /// Where lines go: `None`, stderr (which `link up` opened on the file);
    /// tests write to a file of their own instead.
    file: Option<std::fs::File>,
}

impl RotatingFile {
    /// Lines go to stderr, which `link up` opened on `path` for appending.
    fn new(path: PathBuf, max: u64) -> RotatingFile {
        let size = std::fs::metadata(&path).map_or(0, |m| m.len());
        RotatingFile(Arc::new(Mutex::new(Rotating {
            path,
            max,
            size,
            file: None,
        })))
    }
}

impl Rotating {
    /// Renames the file to `.1` and makes a new one stderr. On failure the
    /// old file goes on growing until another `max` bytes were written
    /// (one attempt per `max`, not one per line).
    fn rotate(&mut self) {
        self.size = 0;
        let mut old = self.path.clone().into_os_string();
        old.push(".1");
        if std::fs::rename(&self.path, &old).is_err() {
            return;
        }
        let file = std::fs::File::options()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&self.path);
        match (file, &mut self.file) {
            (Ok(new), Some(own)) => *own = new,
            (Ok(new), None) => {
                let _ = nix::unistd::dup2_stderr(&new);
            }
            (Err(_), _) => {}
        }
    }
}

/// One event's write, holding the file's lock.
struct Guard<'a>(MutexGuard<'a, Rotating>);

impl std::io::Write for Guard<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let len = buf.len() as u64;
        if self.0.size > 0 && self.0.size.saturating_add(len) > self.0.max {
            self.0.rotate();
        }
        let n = match &mut self.0.file {
            Some(f) => f.write(buf)?,
            None => std::io::stderr().write(buf)?,
        };
        self.0.size = self.0.size.saturating_add(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.0.file {
            Some(f) => f.flush(),
            None => std::io::stderr().flush(),
        }
    }
}

impl<'a> MakeWriter<'a> for RotatingFile {
    type Writer = Guard<'a>;

    fn make_writer(&'a self) -> Guard<'a> {
        // A thread that panicked while writing leaves nothing half-done
        // that matters here: take the data anyway.
        Guard(self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    #[test]
    fn journal_stream_must_name_the_same_file() {
        assert!(journal_stream_is("64769:1234", 64769, 1234));
        assert!(!journal_stream_is("64769:1234", 64769, 1235));
        assert!(!journal_stream_is("64768:1234", 64769, 1234));
        assert!(!journal_stream_is("", 0, 0));
        assert!(!journal_stream_is("64769", 64769, 0));
        assert!(!journal_stream_is("x:y", 0, 0));
    }

    #[test]
    fn priorities_are_sd_daemon_ones() {
        assert_eq!(priority(Level::ERROR), 3);
        assert_eq!(priority(Level::WARN), 4);
        assert_eq!(priority(Level::INFO), 6);
        assert_eq!(priority(Level::DEBUG), 7);
        assert_eq!(priority(Level::TRACE), 7);
    }

    #[test]
    fn the_log_file_is_renamed_before_it_outgrows_its_cap() {
        let dir = std::env::temp_dir().join(format!("tb-logrot-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("x.log");
        let open = || {
            std::fs::File::options()
                .create(true)
                .append(true)
                .open(&path)
                .expect("open")
        };
        let log = RotatingFile(Arc::new(Mutex::new(Rotating {
            path: path.clone(),
            max: 100,
            size: 0,
            file: Some(open()),
        })));
        for i in 0..10 {
            // 30 bytes a line: three fit in 100.
            let line = format!("line {i:02} .....................\n");
            assert_eq!(line.len(), 30);
            log.make_writer().write_all(line.as_bytes()).expect("write");
        }
        let now = std::fs::read_to_string(&path).expect("read");
        let before = std::fs::read_to_string(dir.join("x.log.1")).expect("read .1");
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(now.lines().count(), 1, "{now}");
        assert!(now.starts_with("line 09"), "{now}");
        assert_eq!(before.lines().count(), 3, "{before}");
        assert!(before.starts_with("line 06"), "{before}");
    }

    #[test]
    fn log_filters() {
        assert!(is_log_filter("debug"));
        assert!(is_log_filter("tapbridge=trace,info"));
        assert!(!is_log_filter("verbose"));
    }
}
