//! How an error reaches a person: its message and then each cause's,
//! joined by `": "` ("cannot create TAP tb0: permission denied").
//!
//! The library's error types follow one rule: an error's `Display` is its own
//! part of the sentence only, and what caused it is its `source()`. [`Chain`]
//! renders the whole sentence, exactly as `anyhow`'s `{:#}` does in the
//! binary, for the places where the daemon itself hands a message to a person
//! (a control socket answer, a log line).

use std::error::Error;
use std::fmt;

/// Displays an error followed by its chain of sources, `outer: inner: cause`.
#[derive(Clone, Copy)]
pub struct Chain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(e) = cause {
            write!(f, ": {e}")?;
            cause = e.source();
        }
        Ok(())
    }
}

impl fmt::Debug for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::Chain;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read {0}")]
    struct Outer(&'static str, #[source] std::io::Error);

    #[test]
    fn renders_like_anyhow_alternate() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let e = Outer("x.toml", io);
        assert_eq!(Chain(&e).to_string(), "cannot read x.toml: gone");
        let a =
            anyhow::Error::new(Outer("x.toml", std::io::Error::other("gone"))).context("outermost");
        assert_eq!(
            Chain(a.as_ref()).to_string(),
            format!("{a:#}"),
            "the same sentence as the binary prints"
        );
    }
}
