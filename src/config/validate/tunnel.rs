//! `[tunnel]` and `[[peer]]`: where the tunnel listens and over what transport,
//! its WAN MTU, timers and worker count, the key files, and each peer's name
//! and endpoints. Peers are checked here with the tunnel because a peer without
//! a key file of its own uses the tunnel's.

use std::ops::Range;
use std::time::Duration;

use toml::Spanned;

use super::{Cx, Result};
use crate::config::raw::{RawDropIn, RawMtu, RawPeer, RawTunnel, Str};
use crate::config::span::line_col;
use crate::config::value;
use crate::config::{
    KeyFile, MAX_ENDPOINTS, MAX_WORKERS, PeerConfig, PeerEndpoint, Problem, Transport,
    TunnelConfig, WanMtu,
};

impl Cx<'_> {
    pub(super) fn tunnel(
        &self,
        link: &str,
        raw: &RawTunnel,
        span: &Range<usize>,
    ) -> Result<TunnelConfig> {
        // The link NAME is always a valid site name (it is shorter and
        // stricter); a name of its own is checked like a peer's.
        let name = match &raw.name {
            Some(n) => {
                self.conv(n, "tunnel.name", value::peer_name)?;
                n.get_ref().clone()
            }
            None => link.to_owned(),
        };
        let listen = match &raw.listen {
            Some(l) => {
                let a = self.conv(l, "tunnel.listen", value::listen_addr)?;
                if a.port() == 0 {
                    return Err(self.err(
                        &l.span(),
                        "tunnel.listen",
                        "port 0 would make the kernel pick a port no peer knows; \
                         give one, such as 51901",
                    ));
                }
                a
            }
            None => ([0, 0, 0, 0], 51901).into(),
        };
        let psk_file = self.key_file(&raw.psk_file, "tunnel.psk_file")?;
        let _ = span;
        let keepalive =
            self.duration(&raw.keepalive, "tunnel.keepalive", Duration::from_secs(10))?;
        let rekey_after = self.duration(
            &raw.rekey_after,
            "tunnel.rekey_after",
            Duration::from_secs(120),
        )?;
        if keepalive > rekey_after {
            // Placed at whichever of the two the file sets (keepalive first).
            let (v, key) = match (&raw.keepalive, &raw.rekey_after) {
                (Some(v), _) => (v, "tunnel.keepalive"),
                (None, Some(v)) => (v, "tunnel.rekey_after"),
                (None, None) => unreachable!("the defaults are in order"),
            };
            return Err(self.err(
                &v.span(),
                key,
                format!(
                    "keepalive ({}) is longer than rekey_after ({}): an idle session \
                     would be rekeyed before it is ever kept alive; make keepalive the shorter",
                    shown(&raw.keepalive, "10s"),
                    shown(&raw.rekey_after, "2m"),
                ),
            ));
        }
        Ok(TunnelConfig {
            name,
            transport: self.transport(&raw.transport)?,
            listen,
            psk_file,
            wan_mtu: self.wan_mtu(&raw.wan_mtu)?,
            keepalive,
            rekey_after,
            hub: raw.hub.unwrap_or(false),
            workers: match &raw.workers {
                None => 1,
                Some(v) => {
                    let n = *v.get_ref();
                    usize::try_from(n)
                        .ok()
                        .filter(|n| (1..=MAX_WORKERS).contains(n))
                        .ok_or_else(|| {
                            self.err(
                                &v.span(),
                                "tunnel.workers",
                                format!("{n} is outside the allowed range 1..={}", MAX_WORKERS),
                            )
                        })?
                }
            },
        })
    }

    /// `tunnel.transport`: `"udp"` (the default), `"tcp"` or `"auto"`.
    fn transport(&self, v: &Option<Str>) -> Result<Transport> {
        let key = "tunnel.transport";
        match v.as_ref().map(|v| (v, v.get_ref().as_str())) {
            None | Some((_, "udp")) => Ok(Transport::Udp),
            Some((_, "tcp")) => Ok(Transport::Tcp),
            Some((_, "auto")) => Ok(Transport::Auto),
            Some((v, t)) => Err(self.err(
                &v.span(),
                key,
                format!("{t:?} is none of \"udp\", \"tcp\", \"auto\""),
            )),
        }
    }

    /// `tunnel.wan_mtu`: `"auto"` (the default) or a number in range.
    fn wan_mtu(&self, v: &Option<Spanned<RawMtu>>) -> Result<WanMtu> {
        let key = "tunnel.wan_mtu";
        let Some(v) = v else { return Ok(WanMtu::Auto) };
        match v.get_ref() {
            RawMtu::Word(w) if w == "auto" => Ok(WanMtu::Auto),
            RawMtu::Word(w) => Err(self.err(
                &v.span(),
                key,
                format!("{w:?} is neither \"auto\" nor a number in 576..=9000"),
            )),
            RawMtu::Number(n) => {
                let n = Spanned::new(v.span(), *n);
                self.mtu(&Some(n), key, 0).map(WanMtu::Fixed)
            }
        }
    }

    /// An optional key file path, with where it is named.
    pub(super) fn key_file(&self, v: &Option<Str>, key: &'static str) -> Result<Option<KeyFile>> {
        let Some(v) = v else { return Ok(None) };
        let path = self.path(v, key)?;
        let (line, column) = line_col(self.text, v.span().start);
        Ok(Some(KeyFile {
            path,
            named_in: self.file.to_owned(),
            line,
            column,
            key,
        }))
    }

    /// The peers of the main file (`raw`) and then of each drop-in, in
    /// order; at least one in all, names unique across the files.
    pub(super) fn peers(
        &self,
        tunnel: &TunnelConfig,
        tunnel_span: &Range<usize>,
        raw: Option<&Spanned<Vec<Spanned<RawPeer>>>>,
        dropins: &[(Cx, RawDropIn)],
        need_peers: bool,
    ) -> Result<Vec<PeerConfig>> {
        let mut peers: Vec<PeerConfig> = Vec::new();
        if let Some(l) = raw {
            if l.get_ref().is_empty() {
                return Err(self.err(&l.span(), "peer", "at least one [[peer]] is required"));
            }
            for p in l.get_ref() {
                let peer = self.peer(tunnel, Some(tunnel_span), p, &peers)?;
                peers.push(peer);
            }
        }
        for (cx, d) in dropins {
            for p in d.peer.iter().flat_map(|l| l.get_ref()) {
                let peer = cx.peer(tunnel, None, p, &peers)?;
                peers.push(peer);
            }
        }
        if peers.is_empty() && need_peers {
            return Err(self.at(
                0,
                "peer",
                "at least one [[peer]] is required, in this file or in a peer drop-in \
                 (NAME.d/*.toml)",
            ));
        }
        Ok(peers)
    }

    /// One `[[peer]]` of this file (the main file, which holds
    /// `[tunnel]` at `tunnel_span`, or a drop-in); `before` are the peers
    /// already read.
    fn peer(
        &self,
        tunnel: &TunnelConfig,
        tunnel_span: Option<&Range<usize>>,
        p: &Spanned<RawPeer>,
        before: &[PeerConfig],
    ) -> Result<PeerConfig> {
        let raw = p.get_ref();
        let name = self.required(&raw.name, &p.span(), "peer.name")?;
        self.conv(name, "peer.name", value::peer_name)?;
        if let Some(q) = before.iter().find(|q| q.name == *name.get_ref()) {
            let other = if q.file == self.file {
                "this file".to_owned()
            } else {
                q.file.display().to_string()
            };
            return Err(self.err(
                &name.span(),
                "peer.name",
                format!(
                    "peer name {:?} is used twice: it is defined in {other} too",
                    name.get_ref()
                ),
            ));
        }
        if *name.get_ref() == tunnel.name {
            return Err(self.err(
                &name.span(),
                "peer.name",
                format!(
                    "{:?} is this site's own name (tunnel.name, by default the link NAME); \
                     a peer is named after the other site's tunnel.name",
                    tunnel.name
                ),
            ));
        }
        let endpoints = match &raw.endpoint {
            None => Vec::new(),
            Some(v) => {
                let list = self.endpoints(v)?;
                self.reachable_from(&list, tunnel.listen, v)?;
                list
            }
        };
        let psk_file = self.key_file(&raw.psk_file, "peer.psk_file")?;
        if psk_file.is_none() && tunnel.psk_file.is_none() {
            let problem = format!(
                "this required key is missing: peer {:?} has no psk_file of its own",
                name.get_ref()
            );
            return Err(match tunnel_span {
                Some(span) => self.err(span, "tunnel.psk_file", problem),
                // In a drop-in: at the peer, which needs its own key.
                None => self.err(
                    &p.span(),
                    "peer.psk_file",
                    format!(
                        "this required key is missing: the main file sets no tunnel.psk_file \
                         for peer {:?} to use",
                        name.get_ref()
                    ),
                ),
            });
        }
        Ok(PeerConfig {
            name: name.get_ref().clone(),
            endpoints,
            psk_file,
            file: self.file.to_owned(),
            policy: self.peer_policy(raw)?,
        })
    }

    /// Every address in `list` can be reached from a socket bound to
    /// `listen`: an IPv4 socket reaches no IPv6 address, and a socket bound
    /// to one IPv6 address no IPv4 one (`[::]` serves both). Names are
    /// resolved later and not checked here.
    fn reachable_from(
        &self,
        list: &[PeerEndpoint],
        listen: std::net::SocketAddr,
        v: &Spanned<toml::Value>,
    ) -> Result<()> {
        for e in list {
            let PeerEndpoint::Addr(a) = e else { continue };
            let problem = match (listen.ip(), a.ip()) {
                (std::net::IpAddr::V4(_), std::net::IpAddr::V6(_)) => format!(
                    "{a} is IPv6 but tunnel.listen ({listen}) is IPv4, so no packet could \
                     reach it; listen on \"[::]:{}\" to serve both",
                    listen.port()
                ),
                (std::net::IpAddr::V6(l), std::net::IpAddr::V4(_)) if !l.is_unspecified() => {
                    format!(
                        "{a} is IPv4 but tunnel.listen ({listen}) is one IPv6 address, so no \
                         packet could reach it; listen on \"[::]:{}\" to serve both",
                        listen.port()
                    )
                }
                _ => continue,
            };
            return Err(self.err(&v.span(), "peer.endpoint", problem));
        }
        Ok(())
    }

    /// `peer.endpoint`: one address or name, or an array of 1 to
    /// [`MAX_ENDPOINTS`] distinct ones in order of preference. Errors in an
    /// element point at the value and say which element.
    fn endpoints(&self, v: &Spanned<toml::Value>) -> Result<Vec<PeerEndpoint>> {
        const KEY: &str = "peer.endpoint";
        let err = |p: Problem| self.err(&v.span(), KEY, p);
        let rule = |m: String| err(Problem::Rule(m));
        let list = match v.get_ref() {
            toml::Value::String(s) => {
                return Ok(vec![value::endpoint(s).map_err(|e| err(e.into()))?]);
            }
            toml::Value::Array(list) => list,
            other => {
                return Err(rule(format!(
                    "must be a string like \"203.0.113.10:51901\" or a list of them, not {}",
                    match other.type_str() {
                        "table" => "a table",
                        "integer" | "float" => "a number",
                        "boolean" => "true or false",
                        t => t,
                    }
                )));
            }
        };
        if list.is_empty() || list.len() > MAX_ENDPOINTS {
            return Err(rule(format!(
                "an endpoint array lists 1 to {MAX_ENDPOINTS} addresses, not {}",
                list.len()
            )));
        }
        let mut out: Vec<PeerEndpoint> = Vec::with_capacity(list.len());
        for (i, e) in list.iter().enumerate() {
            let n = i + 1;
            let Some(text) = e.as_str() else {
                return Err(rule(format!(
                    "element {n} ({}) is not a string like \"203.0.113.10:51901\"",
                    e.type_str()
                )));
            };
            let e = value::endpoint(text).map_err(|error| err(Problem::Element { n, error }))?;
            if out.contains(&e) {
                return Err(rule(format!("element {n}: {e} is listed twice")));
            }
            out.push(e);
        }
        Ok(out)
    }
}

/// A duration as the file writes it, or the default's text.
fn shown<'a>(v: &'a Option<Str>, default: &'a str) -> &'a str {
    v.as_ref().map_or(default, |v| v.get_ref().trim())
}
