//! The first worker's control side: requests from the control socket
//! (status, leases, reload, down), a reload read off the lock and applied
//! in one step under it, and the Linux bridge's forgetting after a loop.

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::mpsc::Sender;
use std::time::{Instant, SystemTime};

use super::super::tap::TapQueue;
use super::{Lane, Worker, lock};
use crate::control::status;
use crate::control::{Request, Response};
use crate::error::Chain;
use crate::metrics::MetricsServer;
use crate::reload::{PeerChange, Plan, ReloadError};
use crate::responder::Responder;
use crate::tunnel::{PeerParams, PeerStats};

/// Answers the control requests queued for the link, each under the lock
/// but a reload's file reading. Returns the reply channel of a `down`
/// request (the requests after it wait: the link is going down).
pub(super) fn commands(
    core: &Mutex<Worker>,
    lane: &mut Lane,
    logged: &mut Vec<PeerStats>,
    now: Instant,
    wall: SystemTime,
) -> Option<Sender<Response>> {
    loop {
        let Ok(cmd) = lock(core).commands.try_recv() else {
            return None;
        };
        let response = match cmd.request {
            Request::Down => return Some(cmd.reply),
            Request::Status => {
                let w = lock(core);
                let mut io = lane.io;
                io.add(&w.lanes_io);
                io.rx_bad_vnet_hdr += w.bridge.counters().rx_bad_vnet_hdr;
                let t = w.tcp.counters();
                (io.tcp_accepted, io.tcp_refused, io.tcp_dropped) =
                    (t.accepted, t.refused, t.dropped);
                let status = status::status(
                    &w.info,
                    &w.tunnel,
                    w.bridge.responder(),
                    io,
                    w.bridge.guard_counters(),
                    now,
                    wall,
                );
                Response {
                    ok: true,
                    status: Some(status),
                    ..Response::default()
                }
            }
            Request::Leases => Response {
                ok: true,
                leases: Some(status::leases(lock(core).bridge.responder(), wall)),
                ..Response::default()
            },
            Request::Reload => {
                let r = reload(core, now, logged, &lane.tap);
                lane.io.count_reload(r.ok);
                r
            }
        };
        let _ = cmd.reply.send(response);
    }
}

/// Re-reads the config and key files and applies what changed (see
/// [`crate::reload`]): all of it, or on any error nothing. The files are
/// read and checked without the lock (the other workers keep forwarding);
/// the result is applied under it. Logged, and answered with one line per
/// change. systemd is told it is reloading, and the peer count afterwards.
pub(super) fn reload(
    core: &Mutex<Worker>,
    now: Instant,
    logged: &mut Vec<PeerStats>,
    tap: &TapQueue,
) -> Response {
    let (config, keys) = {
        let mut w = lock(core);
        w.sd.reloading();
        (w.config.clone(), w.keys.clone())
    };
    // Only this thread applies reloads: the configuration cannot change
    // while the files are read.
    let plan = crate::reload::plan(&config, &keys);
    let mut w = lock(core);
    let response = w.apply_reload(plan, now, logged, tap);
    w.sd.reloaded();
    w.notify_peers();
    response
}

/// Makes the Linux bridge the TAP `port` is enslaved to forget the MACs it
/// learned on that port (a loop started or ended, so those hosts may be
/// reachable only the other way now: without this, local hosts keep
/// sending into the TAP until the bridge's entries age out). Rare: a
/// netlink connection is opened for it.
pub(super) fn flush_bridge_port(port: &str) {
    let flushed = crate::netlink::Netlink::new()
        .map_err(|e| Chain(&e).to_string())
        .and_then(|mut nl| {
            let link = nl
                .link_by_name(port)
                .map_err(|e| Chain(&e).to_string())?
                .ok_or_else(|| format!("{port} is gone"))?;
            nl.flush_bridge_port(link.index)
                .map_err(|e| Chain(&e).to_string())
        });
    if let Err(e) = flushed {
        tracing::warn!("could not make the bridge forget the MACs behind {port}: {e}");
    }
}

impl Worker {
    /// Applies a reload's `plan` (or reports why there is none), logs and
    /// answers it.
    fn apply_reload(
        &mut self,
        plan: Result<Plan, ReloadError>,
        now: Instant,
        logged: &mut Vec<PeerStats>,
        tap: &TapQueue,
    ) -> Response {
        let result = plan.and_then(|plan| self.apply(plan, now, logged, tap));
        match result {
            Ok(lines) => {
                if lines.is_empty() {
                    tracing::info!("reload: no change");
                }
                for line in &lines {
                    tracing::info!("reload: {line}");
                }
                Response {
                    ok: true,
                    changes: Some(lines),
                    ..Response::default()
                }
            }
            Err(e) => {
                tracing::warn!("reload refused: {e}");
                Response {
                    config_error: true,
                    ..Response::error(e.to_string())
                }
            }
        }
    }

    /// Puts `plan` in place. What can fail (the new responder, the new
    /// lease file, the new metrics address) is prepared first; after that
    /// nothing can fail and everything is applied.
    fn apply(
        &mut self,
        plan: Plan,
        now: Instant,
        logged: &mut Vec<PeerStats>,
        tap: &TapQueue,
    ) -> Result<Vec<String>, ReloadError> {
        let path = plan.config.path.clone();
        // 1. Fallible preparation; nothing running is touched.
        let responder = if plan.responder {
            Some(self.next_responder(&plan.config)?)
        } else {
            None
        };
        let metrics = if plan.metrics {
            Some(match &plan.config.metrics {
                Some(m) => Some(
                    MetricsServer::start(m.listen, self.to_worker.clone(), self.waker.clone())
                        .map_err(|e| ReloadError::apply(&path, "metrics", Chain(&e).to_string()))?,
                ),
                None => None,
            })
        } else {
            None
        };
        let t = &plan.config.tunnel;
        if plan.transport && t.transport.listens_on_tcp() {
            // The last fallible step: nothing is changed if it fails.
            let listen = self.info.listen;
            self.tcp.listen(listen, true).map_err(|e| {
                ReloadError::apply(
                    &path,
                    "tunnel",
                    format!("cannot listen on TCP {listen}: {e}"),
                )
            })?;
        }
        // 2. Apply; nothing below fails.
        for change in plan.peers {
            match change {
                PeerChange::Removed { name } => {
                    if let Some(id) = self.tunnel.peer_id(&name) {
                        let endpoint = self.tunnel.peer_status(id).and_then(|s| s.endpoint);
                        self.tunnel.remove_peer(id, now);
                        self.bridge.forget_peer(id, now);
                        // Its session ends here: peer_down, if it was up (the
                        // hooks of the configuration it was removed from).
                        self.peer_hooks
                            .down(&name, endpoint, &self.config.hooks.peer_down);
                    }
                }
                PeerChange::Added {
                    name,
                    endpoints,
                    keys,
                } => {
                    for e in &endpoints {
                        self.resolve_now(&name, e, now);
                    }
                    let id = self.tunnel.add_peer(
                        PeerParams {
                            name,
                            keys,
                            // Names join the list when the resolver answers.
                            endpoints: endpoints.iter().filter_map(|e| e.addr()).collect(),
                        },
                        now,
                    );
                    if logged.len() <= id {
                        logged.resize(id + 1, PeerStats::default());
                    }
                    logged[id] = PeerStats::default();
                }
                PeerChange::Endpoint { name, endpoints } => {
                    if let Some(id) = self.tunnel.peer_id(&name) {
                        // A name has no address until the resolver thread
                        // answers; without any, the current one is kept.
                        let addrs: Vec<_> = endpoints.iter().map(|e| e.addr()).collect();
                        self.tunnel.set_peer_endpoints(id, &addrs, now);
                    }
                    for e in &endpoints {
                        self.resolve_now(&name, e, now);
                    }
                }
                PeerChange::Keys { name, keys } => {
                    if let Some(id) = self.tunnel.peer_id(&name) {
                        self.tunnel.set_peer_keys(id, keys, now);
                    }
                }
            }
        }
        let t = &plan.config.tunnel;
        if plan.timers {
            self.tunnel.set_timers(t.keepalive, t.rekey_after);
        }
        if plan.hub {
            self.bridge.set_hub(t.hub);
        }
        self.tcp.set_peers(self.tunnel.peer_count());
        self.bridge.set_peer_count(self.tunnel.peer_count());
        if plan.transport {
            self.tunnel.set_transport(t.transport.into(), now);
            if !t.transport.listens_on_tcp() {
                self.tcp.close_all();
                let _ = self.tcp.listen(self.info.listen, false);
            }
        }
        if plan.guard {
            self.bridge.reconfigure_guard(&plan.config.guard, now);
        }
        if let Some((mut next, lease_file)) = responder {
            // Leases as they are now stay on disk whatever happens next.
            self.flush_leases(tap);
            if let (Some(n), Some(old)) = (next.as_mut(), self.bridge.replace_responder(None)) {
                n.take_over(old);
            }
            self.bridge.replace_responder(next);
            if self.lease_store.path() != lease_file.as_deref() {
                self.lease_store.close();
                let db = self
                    .bridge
                    .responder()
                    .map(|r| r.lease_db())
                    .unwrap_or_default();
                let store =
                    crate::leases::LeaseStore::open(lease_file.as_deref(), db, self.waker.clone());
                self.lease_store = store.unwrap_or_else(|e| {
                    tracing::error!("{}; leases are not persisted", Chain(&e));
                    Default::default()
                });
            }
            self.lease_file = lease_file;
        }
        if let Some(m) = metrics {
            // The old endpoint closes as the new one takes over.
            self.metrics = m;
        }
        self.config = plan.config;
        self.keys = plan.keys;
        Ok(plan.lines)
    }

    /// The responder for `cfg`, carrying over the running one's leases and
    /// state where they still fit, and its lease file; `None` without
    /// `[arp]` and `[dhcp]`. A new lease file is written before anything
    /// changes, so the leases are never only in memory.
    fn next_responder(
        &self,
        cfg: &crate::config::Config,
    ) -> Result<(Option<Responder>, Option<PathBuf>), ReloadError> {
        let lease_file = cfg.dhcp.as_ref().map(|d| d.lease_file.clone());
        let Some((arp, dhcp)) = cfg.responder_settings(self.info.interface.mac) else {
            return Ok((None, None));
        };
        let section = if cfg.dhcp != self.config.dhcp {
            "dhcp"
        } else {
            "arp"
        };
        let refuse = |m: String| ReloadError::apply(&cfg.path, section, m);
        // The running lease table when DHCP keeps running; the lease file,
        // as at start-up, when it starts.
        let running_dhcp = self.config.dhcp.is_some();
        let leases = match (self.bridge.responder(), &lease_file) {
            (Some(r), _) if running_dhcp => r.lease_db(),
            (_, Some(f)) => crate::leases::load(f).map_err(|e| refuse(Chain(&e).to_string()))?,
            _ => Default::default(),
        };
        let next = Responder::new(arp, dhcp, leases).map_err(|e| refuse(e.to_string()))?;
        if let (Some(file), Some(bytes)) = (&lease_file, next.lease_snapshot())
            && self.lease_file.as_ref() != Some(file)
        {
            crate::leases::write_lease_file_atomic(file, &bytes)
                .map_err(|e| refuse(Chain(&e).to_string()))?;
        }
        Ok((Some(next), lease_file))
    }

    /// Tells systemd how many peers are up (on peer events, not per frame).
    pub(super) fn notify_peers(&mut self) {
        if !self.sd.enabled() {
            return;
        }
        let n = self.tunnel.peer_count();
        let up = (0..n)
            .filter_map(|p| self.tunnel.peer_status(p))
            .filter(|s| s.state == crate::tunnel::PeerState::Up)
            .count();
        let status = format!(
            "link up, {n} peer{}, {up} up",
            if n == 1 { "" } else { "s" }
        );
        self.sd.status(&status);
    }
}
