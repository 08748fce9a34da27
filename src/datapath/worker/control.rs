//! The first worker's control side: requests from the control socket
//! (status, leases, reload, down), a reload read off the lock and applied
//! in one step under it, and the Linux bridge's forgetting after a loop.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use nix::sys::eventfd::EventFd;

use super::super::tap::TapQueue;
use super::super::tcp::bind_listener;
use super::out::TapOut;
use super::{Lane, Worker, lock};
use crate::config::{Config, Psk};
use crate::control::server::Command;
use crate::control::status;
use crate::control::{Request, Response};
use crate::error::Chain;
use crate::leases::{LeaseChange, LeaseDb, LeaseStore};
use crate::mac::MacAddr;
use crate::metrics::MetricsServer;
use crate::peer_id::PeerId;
use crate::reload::{PeerChange, Plan, ReloadError};
use crate::responder::{ArpSettings, DhcpPlan, Responder};
use crate::role::Role;
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
                let mut status = status::status(
                    &w.info,
                    &w.tunnel,
                    w.bridge.responder(),
                    io,
                    status::Layer2 {
                        guard: w.bridge.guard_counters(),
                        peer_macs: w.bridge.peer_macs(now),
                    },
                    now,
                    wall,
                );
                status.partner = w.partner_status(now);
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
            Request::Role { role } => lock(core).set_role(role, lane, now),
        };
        let _ = cmd.reply.send(response);
    }
}

impl Worker {
    /// `bridge-ctl role`: makes this box the active or the standby one of
    /// its pair (SPEC §5 "High availability"), at once: a demotion stops
    /// forwarding and drops every session before the next frame; a
    /// promotion makes handshakes with every peer due now and announces to
    /// the LAN (`ha.announce`). Logged; refused without `[ha]`.
    fn set_role(&mut self, role: Role, lane: &mut Lane, now: Instant) -> Response {
        if self.config.ha.is_none() {
            return Response::error(format!(
                "link {} has no [ha] section, so it is always active; add [ha] to its \
                 configuration to make it one of a pair",
                self.config.name
            ));
        }
        let old = self.bridge.role();
        if role == Role::Standby {
            // The frames already read wait for nothing: from here on they
            // are dropped, and the sessions go with the tunnel's standby.
            self.bridge.set_role(role, now, &mut tap_out!(lane));
            self.tunnel.set_standby(true, now);
        } else {
            self.tunnel.set_standby(false, now);
            self.bridge.set_role(role, now, &mut tap_out!(lane));
            let announce = self.config.ha.as_ref().is_some_and(|h| h.announce);
            if old == Role::Standby && announce {
                // The MACs behind peers the active partner listed: the LAN
                // learns they are behind this box now.
                let macs = self.partner_macs(now);
                self.bridge.announce_macs(&macs, &mut tap_out!(lane));
            }
        }
        self.partner_role(role);
        if old == role {
            tracing::info!("role: {role} (unchanged)");
        } else {
            tracing::info!("role: {old} -> {role}");
        }
        Response {
            ok: true,
            role: Some(role),
            previous_role: Some(old),
            ..Response::default()
        }
    }
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

/// Re-reads the config and key files and applies what changed (see
/// [`crate::reload`]): all of it, or on any error nothing. Everything that
/// reads or writes files, binds sockets or waits happens without the lock
/// (the other workers keep forwarding): the files are read and checked, the
/// new responder, lease file and store, metrics endpoint and TCP listener
/// are made ready; then the result is applied under the lock in one step
/// that cannot fail, and what it replaced is flushed and closed after.
/// Logged, and answered with one line per change. systemd is told it is
/// reloading, and the peer count afterwards.
pub(super) fn reload(
    core: &Mutex<Worker>,
    now: Instant,
    logged: &mut Vec<PeerStats>,
    tap: &TapQueue,
) -> Response {
    let running = {
        let mut w = lock(core);
        w.sd.reloading();
        Running::of(&w)
    };
    // Only this thread applies reloads: the configuration cannot change
    // while the files are read.
    let prepared =
        crate::reload::plan(&running.config, &running.keys).and_then(|p| prepare(p, &running));
    let (response, replaced) = {
        let mut w = lock(core);
        let (response, replaced) = match prepared {
            Ok(ready) => {
                let (lines, replaced) = w.apply(ready, now, logged);
                (answer(Ok(lines)), Some(replaced))
            }
            Err(e) => (answer(Err(e)), None),
        };
        w.sd.reloaded();
        w.notify_peers();
        (response, replaced)
    };
    if let Some(mut old) = replaced {
        // The replies the old lease store still holds go out once their
        // leases are on disk; then its thread ends.
        old.lease_changes.clear();
        old.store
            .flush(&mut old.lease_changes, |frame| tap.write(frame));
        old.store.close();
        // Its thread is joined; a scrape it serves may wait for this thread.
        drop(old.metrics);
    }
    response
}

/// Logs a reload's outcome and makes its answer.
fn answer(result: Result<Vec<String>, ReloadError>) -> Response {
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

/// What a reload needs of the running link, copied under the lock.
struct Running {
    config: Config,
    keys: Vec<Vec<Psk>>,
    tap_mac: MacAddr,
    listen: SocketAddr,
    tcp_listening: Option<SocketAddr>,
    lease_file: Option<PathBuf>,
    /// The running responder's leases, when DHCP runs.
    leases: Option<LeaseDb>,
    to_worker: Sender<Command>,
    waker: Arc<EventFd>,
}

impl Running {
    fn of(w: &Worker) -> Running {
        Running {
            config: w.config.clone(),
            keys: w.keys.clone(),
            tap_mac: w.info.interface.mac,
            listen: w.info.listen,
            tcp_listening: w.tcp.listening_on(),
            lease_file: w.lease_file.clone(),
            leases: w
                .config
                .dhcp
                .as_ref()
                .and(w.bridge.responder())
                .map(Responder::lease_db),
            to_worker: w.to_worker.clone(),
            waker: w.waker.clone(),
        }
    }
}

/// A reload made ready without the lock: everything that could fail has
/// succeeded, and nothing running has changed yet.
struct Ready {
    plan: Plan,
    /// `Some` when the responder is rebuilt.
    responder: Option<NextResponder>,
    /// `Some` when `[metrics]` changed: the new endpoint, if any.
    metrics: Option<Option<MetricsServer>>,
    /// A TCP listener bound for a transport that now listens on TCP.
    tcp_listener: Option<std::net::TcpListener>,
}

/// The responder a reload puts in place.
struct NextResponder {
    /// Built from the running leases as they were when the reload started
    /// (or from the lease file, when DHCP starts); rebuilt from the leases
    /// of the moment under the lock when DHCP was running.
    built: Option<Responder>,
    settings: Option<(Option<ArpSettings>, Option<DhcpPlan>)>,
    lease_file: Option<PathBuf>,
    /// A store for a new lease file, opened on `built`'s leases.
    store: Option<(LeaseStore, LeaseDb)>,
}

/// What a reload replaced, to flush and close after the lock is released.
pub(super) struct Replaced {
    store: LeaseStore,
    lease_changes: Vec<LeaseChange>,
    /// The metrics endpoint a new one replaced.
    metrics: Option<MetricsServer>,
}

/// Checks and readies `plan` against the running link, without the lock.
fn prepare(plan: Plan, running: &Running) -> Result<Ready, ReloadError> {
    let path = plan.config.path.clone();
    let responder = if plan.responder {
        Some(next_responder(&plan.config, running)?)
    } else {
        None
    };
    let metrics = if plan.metrics {
        Some(match &plan.config.metrics {
            Some(m) => Some(
                MetricsServer::start(m.listen, running.to_worker.clone(), running.waker.clone())
                    .map_err(|e| ReloadError::apply(&path, "metrics", Chain(&e).to_string()))?,
            ),
            None => None,
        })
    } else {
        None
    };
    let listen = running.listen;
    let tcp_listener = if plan.transport
        && plan.config.tunnel.transport.listens_on_tcp()
        && running.tcp_listening != Some(listen)
    {
        Some(bind_listener(listen).map_err(|e| {
            ReloadError::apply(
                &path,
                "tunnel",
                format!("cannot listen on TCP {listen}: {e}"),
            )
        })?)
    } else {
        None
    };
    Ok(Ready {
        plan,
        responder,
        metrics,
        tcp_listener,
    })
}

/// The responder for `cfg`, carrying over the running one's leases where
/// they still fit, and its lease file; `None` without `[arp]` and
/// `[dhcp]`. A new lease file is written, and its store opened, before
/// anything changes, so the leases are never only in memory.
fn next_responder(cfg: &Config, running: &Running) -> Result<NextResponder, ReloadError> {
    let lease_file = cfg.dhcp.as_ref().map(|d| d.lease_file.clone());
    let Some((arp, dhcp)) = cfg.responder_settings(running.tap_mac) else {
        return Ok(NextResponder {
            built: None,
            settings: None,
            lease_file: None,
            store: None,
        });
    };
    let section = if cfg.dhcp != running.config.dhcp {
        "dhcp"
    } else {
        "arp"
    };
    let refuse = |m: String| ReloadError::apply(&cfg.path, section, m);
    // The running lease table when DHCP keeps running; the lease file,
    // as at start-up, when it starts.
    let leases = match (&running.leases, &lease_file) {
        (Some(db), _) => db.clone(),
        (None, Some(f)) => crate::leases::load(f).map_err(|e| refuse(Chain(&e).to_string()))?,
        (None, None) => LeaseDb::default(),
    };
    let built =
        Responder::new(arp.clone(), dhcp.clone(), leases).map_err(|e| refuse(e.to_string()))?;
    let mut store = None;
    if let Some(file) = &lease_file
        && running.lease_file.as_ref() != Some(file)
    {
        if let Some(bytes) = built.lease_snapshot() {
            crate::leases::write_lease_file_atomic(file, &bytes)
                .map_err(|e| refuse(Chain(&e).to_string()))?;
        }
        let db = built.lease_db();
        match LeaseStore::open(Some(file), db.clone(), running.waker.clone()) {
            Ok(s) => store = Some((s, db)),
            // As at start-up: the link runs on, its leases in memory only.
            Err(e) => tracing::error!("{}; leases are not persisted", Chain(&e)),
        }
    }
    Ok(NextResponder {
        built: Some(built),
        settings: Some((arp, dhcp)),
        lease_file,
        store,
    })
}

impl Worker {
    /// Puts a readied reload in place, under the lock; nothing here fails,
    /// reads or writes a file, or waits. Returns the change lines and what
    /// was replaced.
    fn apply(
        &mut self,
        ready: Ready,
        now: Instant,
        logged: &mut Vec<PeerStats>,
    ) -> (Vec<String>, Replaced) {
        let Ready {
            plan,
            responder,
            metrics,
            tcp_listener,
        } = ready;
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
                    if logged.len() <= id.index() {
                        logged.resize(id.index() + 1, PeerStats::default());
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
        // Every peer's policy, by the number the tunnel gave it (a removed
        // peer's slot keeps the default): whole, at once, with no session
        // touched.
        let mut policies = vec![crate::bridge::PeerPolicy::default(); self.tunnel.peer_count()];
        for p in &plan.config.peers {
            if let Some(id) = self.tunnel.peer_id(&p.name)
                && let Some(slot) = policies.get_mut(id.index())
            {
                *slot = p.policy.clone();
            }
        }
        self.bridge.set_policies(policies);
        if plan.transport {
            self.tunnel.set_transport(t.transport.into(), now);
            if let Some(l) = tcp_listener
                && let Err(e) = self.tcp.install_listener(l)
            {
                // Only epoll_ctl on a fresh descriptor can fail here.
                tracing::error!("cannot watch the TCP listener on {}: {e}", self.info.listen);
            }
            if !t.transport.listens_on_tcp() {
                self.tcp.close_all();
                let _ = self.tcp.listen(self.info.listen, false);
            }
        }
        if plan.guard {
            self.bridge.reconfigure_guard(&plan.config.guard, now);
        }
        let mut replaced = Replaced {
            store: LeaseStore::default(),
            lease_changes: Vec::new(),
            metrics: None,
        };
        if let Some(next) = responder {
            self.swap_responder(next, &mut replaced);
        }
        if let Some(m) = metrics {
            // The old endpoint closes (its thread is joined) after the lock.
            replaced.metrics = std::mem::replace(&mut self.metrics, m);
        }
        self.config = plan.config;
        self.keys = plan.keys;
        (plan.lines, replaced)
    }

    /// Replaces the responder (and, with a new lease file, the lease store).
    fn swap_responder(&mut self, next: NextResponder, replaced: &mut Replaced) {
        // The old responder's lease changes go to the store that has its
        // file; they become durable there, as any batch does.
        self.bridge.take_lease_changes(&mut self.lease_changes);
        self.lease_store.commit(&mut self.lease_changes);
        let NextResponder {
            built,
            settings,
            lease_file,
            store,
        } = next;
        let old = self.bridge.replace_responder(None);
        // With DHCP running, leases granted since `built` was made are in
        // the running table: build again from it (no I/O; the settings
        // were accepted with the same checks).
        let rebuilt = match (&old, settings) {
            (Some(r), Some((arp, dhcp))) if self.config.dhcp.is_some() => {
                Responder::new(arp, dhcp, r.lease_db()).ok()
            }
            _ => None,
        };
        let mut next = rebuilt.or(built);
        if let (Some(n), Some(old)) = (next.as_mut(), old) {
            n.take_over(old);
        }
        if let Some((mut store, opened_with)) = store {
            // The store was opened on the leases of before; catch it up.
            let now_db = next.as_ref().map(Responder::lease_db).unwrap_or_default();
            opened_with.changes_to(&now_db, &mut self.lease_changes);
            store.commit(&mut self.lease_changes);
            store.set_mirror(self.partner.is_some());
            replaced.store = std::mem::replace(&mut self.lease_store, store);
        } else if self.lease_store.path() != lease_file.as_deref() {
            // DHCP stopped, or its store could not be opened.
            replaced.store = std::mem::take(&mut self.lease_store);
        }
        self.bridge.replace_responder(next);
        self.lease_file = lease_file;
    }

    /// Tells systemd how many peers are up (on peer events, not per frame).
    pub(super) fn notify_peers(&mut self) {
        if !self.sd.enabled() {
            return;
        }
        let n = self.tunnel.peer_count();
        let up = PeerId::all(n)
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
