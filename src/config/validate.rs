//! Turns a [`RawConfig`] into a [`Config`]: applies the defaults of SPEC §4
//! and checks every rule, reporting the first violation with its position.
//!
//! This file holds what all sections share: `Cx`, which turns a value's span
//! into the line and column of its error, with its helpers for required keys,
//! MTUs, durations and paths; and `Cx::config`, which validates the sections
//! in order. Each section's checks are in the submodule named after it, except
//! `[metrics]`, whose one key is checked in `Cx::config`.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::plain;
use super::raw::{RawConfig, RawDropIn, Str};
use super::span::line_col;
use super::value::{self, ValueError};
use super::{Config, ConfigError, DropIn, HooksConfig, MetricsConfig, Problem};

mod arp;
mod control;
mod dhcp;
mod guard;
mod ha;
mod hooks;
mod interface;
mod policy;
mod tunnel;

const MTU_RANGE: std::ops::RangeInclusive<i64> = 576..=9000;

/// Parses and validates; see [`Config::parse_with`]. With `need_peers`
/// false, no peer at all is accepted ([`Config::load_without_peers`]).
pub(super) fn parse(
    name: &str,
    path: &Path,
    text: &str,
    dropins: &[DropIn],
    need_peers: bool,
) -> Result<Config> {
    let cx = Cx { file: path, text };
    let raw: RawConfig = toml::from_str(text).map_err(|e| cx.toml_error(&e))?;
    let mut extra = Vec::with_capacity(dropins.len());
    for d in dropins {
        let dcx = Cx {
            file: &d.path,
            text: &d.text,
        };
        let raw: RawDropIn = toml::from_str(&d.text).map_err(|e| dcx.dropin_error(&e, name))?;
        extra.push((dcx, raw));
    }
    cx.config(name, raw, &extra, need_peers)
}

/// Error context: the file and its text, to turn byte spans into positions.
struct Cx<'a> {
    file: &'a Path,
    text: &'a str,
}

type Result<T> = std::result::Result<T, ConfigError>;

impl Cx<'_> {
    /// An error at byte `offset`.
    fn at(&self, offset: usize, key: &str, problem: impl Into<Problem>) -> ConfigError {
        let (line, column) = line_col(self.text, offset);
        ConfigError::Invalid {
            file: self.file.to_owned(),
            line,
            column,
            key: key.to_owned(),
            problem: Box::new(problem.into()),
        }
    }

    fn err(&self, span: &Range<usize>, key: &str, problem: impl Into<Problem>) -> ConfigError {
        self.at(span.start, key, problem)
    }

    /// Applies a value parser to a spanned string, locating its error.
    fn conv<T>(
        &self,
        v: &Str,
        key: &str,
        f: impl FnOnce(&str) -> std::result::Result<T, ValueError>,
    ) -> Result<T> {
        f(v.get_ref()).map_err(|e| self.err(&v.span(), key, e))
    }

    fn opt<T>(
        &self,
        v: &Option<Str>,
        key: &str,
        f: impl FnOnce(&str) -> std::result::Result<T, ValueError>,
    ) -> Result<Option<T>> {
        v.as_ref().map(|v| self.conv(v, key, f)).transpose()
    }

    /// A required key inside a section that starts at `section`.
    fn required<'v>(
        &self,
        v: &'v Option<Str>,
        section: &Range<usize>,
        key: &str,
    ) -> Result<&'v Str> {
        v.as_ref()
            .ok_or_else(|| self.err(section, key, "this required key is missing"))
    }

    fn toml_error(&self, e: &toml::de::Error) -> ConfigError {
        let offset = e.span().map_or(0, |s| s.start);
        // The key as the message names it, on one line as the message is
        // (Problem::Syntax renders the message itself).
        let message = e.message().trim().replace(char::is_control, " ");
        // toml keeps the key path private but prints it when the error has
        // no input attached: "message\nin `a.b`".
        let mut bare = e.clone();
        bare.set_input(None);
        let rendered = bare.to_string();
        let mut key = rendered
            .lines()
            .filter_map(|l| l.strip_prefix("in `").and_then(|r| r.strip_suffix('`')))
            .next_back()
            .unwrap_or_default()
            .replace(char::is_control, " ");
        if let Some(field) = message
            .strip_prefix("unknown field `")
            .and_then(|r| r.split('`').next())
        {
            if !key.is_empty() {
                key.push('.');
            }
            key.push_str(field);
        }
        if message == "duplicate key"
            && let Some((dup, words)) = plain::duplicate_key(self.text, offset)
        {
            return self.at(offset, &dup, words);
        }
        match plain::type_error(&message, &key) {
            Some(words) => self.at(offset, &key, Problem::Rule(words)),
            None => self.at(offset, &key, Problem::Syntax(Box::new(e.clone()))),
        }
    }

    /// A drop-in's parse error: a key at its top level is one that belongs
    /// in the main file (or a typo), said so; the rest as in the main file.
    fn dropin_error(&self, e: &toml::de::Error, link: &str) -> ConfigError {
        let message = e.message().trim();
        if let Some(field) = message
            .strip_prefix("unknown field `")
            .and_then(|r| r.split('`').next())
        {
            let top =
                matches!(self.toml_error(e), ConfigError::Invalid { ref key, .. } if key == field);
            if top {
                let offset = e.span().map_or(0, |s| s.start);
                return self.at(
                    offset,
                    field,
                    format!(
                        "a peer drop-in holds [[peer]] tables and nothing else; \
                         {field} belongs in the main file {link}.toml"
                    ),
                );
            }
        }
        self.toml_error(e)
    }

    fn mtu(&self, v: &Option<Spanned<i64>>, key: &str, default: u32) -> Result<u32> {
        match v {
            None => Ok(default),
            Some(v) => {
                let n = *v.get_ref();
                if !MTU_RANGE.contains(&n) {
                    return Err(self.err(
                        &v.span(),
                        key,
                        format!("{n} is outside the allowed range 576..=9000"),
                    ));
                }
                u32::try_from(n).map_err(|_| self.err(&v.span(), key, "out of range"))
            }
        }
    }

    /// A duration with a default; zero is rejected.
    fn duration(&self, v: &Option<Str>, key: &str, default: Duration) -> Result<Duration> {
        let Some(v) = v else { return Ok(default) };
        let d = self.conv(v, key, value::duration)?;
        if d.is_zero() {
            return Err(self.err(&v.span(), key, "must be longer than zero"));
        }
        Ok(d)
    }

    /// A path; relative paths are relative to the config file's directory.
    fn path(&self, v: &Str, key: &str) -> Result<PathBuf> {
        let s = v.get_ref();
        if s.is_empty() {
            return Err(self.err(&v.span(), key, "a path cannot be empty"));
        }
        let p = Path::new(s);
        if p.is_absolute() {
            Ok(p.to_owned())
        } else {
            Ok(self.file.parent().unwrap_or(Path::new("")).join(p))
        }
    }

    fn config(
        &self,
        name: &str,
        raw: RawConfig,
        dropins: &[(Cx, RawDropIn)],
        need_peers: bool,
    ) -> Result<Config> {
        let interface = match &raw.interface {
            Some(i) => self.interface(name, i.get_ref(), &i.span())?,
            None => return Err(self.at(0, "interface", "required section [interface] is missing")),
        };
        let (tunnel, tunnel_span) = match &raw.tunnel {
            Some(t) => (self.tunnel(name, t.get_ref(), &t.span())?, t.span()),
            None => return Err(self.at(0, "tunnel", "required section [tunnel] is missing")),
        };
        let peers = self.peers(
            &tunnel,
            &tunnel_span,
            raw.peer.as_ref(),
            dropins,
            need_peers,
        )?;
        let arp = raw
            .arp
            .as_ref()
            .map(|a| self.arp(a.get_ref()))
            .transpose()?;
        let dhcp = match &raw.dhcp {
            Some(d) => self.dhcp(name, &interface, arp.as_ref(), d.get_ref(), &d.span())?,
            None => None,
        };
        let hooks = match &raw.hooks {
            Some(h) => self.hooks(h.get_ref())?,
            None => HooksConfig::default(),
        };
        let control = self.control(name, raw.control.as_ref().map(|c| c.get_ref()))?;
        let metrics = match &raw.metrics {
            Some(m) => Some(MetricsConfig {
                listen: match &m.get_ref().listen {
                    Some(l) => self.conv(l, "metrics.listen", value::listen_addr)?,
                    None => ([127, 0, 0, 1], 9477).into(),
                },
            }),
            None => None,
        };
        let guard = self.guard(raw.guard.as_ref().map(|g| g.get_ref()), dhcp.is_some())?;
        let ha = match &raw.ha {
            Some(h) => Some(self.ha(h.get_ref(), &h.span(), &tunnel)?),
            None => None,
        };
        Ok(Config {
            name: name.to_owned(),
            path: self.file.to_owned(),
            interface,
            tunnel,
            peers,
            dhcp,
            arp,
            hooks,
            control,
            metrics,
            guard,
            ha,
            written: dropins
                .iter()
                .fold(super::Written::of(self.text), |w, (d, _)| {
                    w.with_dropin(d.text)
                }),
        })
    }
}
