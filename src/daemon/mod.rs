//! Daemon wiring: config → netlink → datapath → control, and a clean stop.
//!
//! [`run`] brings a link up step by step, recording every change; if any step
//! fails, everything done so far is undone in reverse order, so a failed
//! `link up` leaves no TAP, address, route or socket behind. Once up, it
//! reports readiness, runs the worker until SIGTERM/SIGINT or a `down`
//! request, then runs the down hooks, writes the leases, undoes the netlink
//! changes, closes the metrics endpoint and removes the socket.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::bridge::Bridge;
use crate::config::{Config, Psk, WanMtu};
use crate::control::status::StaticLinkInfo;
use crate::control::{self, ClientError, InterfaceStatus, Request, Response};
use crate::datapath::tap::{Tap, VNET_HDR_LEN};
use crate::datapath::udp::{UdpOptions, UdpSocket};
use crate::datapath::worker::{Exit, Lane, Worker};
use crate::guard::Guard;
use crate::hooks::{self, HookEnv};
use crate::metrics::MetricsServer;
use crate::netlink::{Change, Changes, Netlink};
use crate::switch::Switch;
use crate::tunnel::{BASE_MTU, OsEntropy, PeerParams, PresharedKey, Tunnel, TunnelParams};

use derived::{build_responder, loop_nonce};
pub use derived::{check_responder, stable_mac};
pub use error::DaemonError;
pub use lock::{LinkLock, lock_path};
pub use registry::{REGISTRY_DIR, Registration, registered_sockets};

mod derived;
mod error;
mod lock;
mod registry;

/// Packets under one key before a rekey (the tunnel caps it at 2^30 in any
/// case, to keep AES-GCM far inside its usage limits).
pub const REKEY_AFTER_PACKETS: u64 = 1 << 30;

/// With `wan_mtu = "auto"`, the path MTU search's ceiling before the worker
/// has read the route's MTU towards a peer.
const INITIAL_AUTO_CEILING: usize = 1500;

/// Largest frame with offloads: a 64 KiB IP packet, Ethernet + VLAN header,
/// virtio-net header.
pub const GSO_FRAME_MAX: usize = 65535 + 18 + VNET_HDR_LEN;

/// Whether a [`GSO_FRAME_MAX`] frame fits the tunnel's 64 fragments over a
/// WAN of `wan_mtu` (IPv6 outer headers, the worst case).
pub fn tso_fits(wan_mtu: u32) -> bool {
    let per_fragment = (wan_mtu as usize)
        .saturating_sub(crate::tunnel::IPV6_UDP_OVERHEAD + crate::tunnel::DATA_OVERHEAD)
        .saturating_sub(crate::wire::fragment::HEADER_LEN);
    per_fragment * crate::wire::fragment::MAX_FRAGMENTS >= GSO_FRAME_MAX
}

/// Where the daemon's log goes when `link up` detaches it: beside the socket.
pub fn log_path(cfg: &Config) -> PathBuf {
    cfg.control.socket.with_extension("log")
}

/// Is a daemon answering on this link's socket? `Some(pid)` if so. A
/// socket nobody answers on is removed only when no daemon holds the link's
/// lock (one that does may be between creating its socket and listening).
pub fn running_pid(cfg: &Config) -> Result<Option<u32>, DaemonError> {
    match control::request(&cfg.control.socket, Request::Status, Duration::from_secs(3)) {
        Ok(Response {
            status: Some(s), ..
        }) => Ok(Some(s.pid)),
        Ok(_) => Ok(Some(0)),
        Err(ClientError::NotRunning(_)) => Ok(None),
        Err(ClientError::Stale(_)) => {
            if !LinkLock::is_held(cfg) {
                let _ = std::fs::remove_file(&cfg.control.socket);
            }
            Ok(None)
        }
        Err(ClientError::Refused(reason)) => Err(DaemonError::Refused {
            socket: cfg.control.socket.clone(),
            reason,
        }),
        Err(e) => Err(e.into()),
    }
}

/// What is set up, to be undone.
struct Setup {
    nl: Netlink,
    changes: Changes,
    socket: Option<PathBuf>,
    /// The link's entry in the runtime registry.
    registration: Option<Registration>,
}

impl Setup {
    fn undo(self) {
        let Setup {
            mut nl,
            changes,
            socket,
            registration,
        } = self;
        drop(registration);
        for e in changes.undo(&mut nl) {
            tracing::warn!(
                "while removing the link's configuration: {}",
                crate::error::Chain(&e)
            );
        }
        if let Some(s) = socket {
            let _ = std::fs::remove_file(s);
        }
    }
}

/// Brings the link up, calls `ready(summary)` once it is, and runs it until
/// it is told to stop. Returns after a clean teardown.
pub fn run(cfg: &Config, ready: impl FnOnce(&str)) -> Result<(), DaemonError> {
    // First, before anything is looked at or touched: one daemon per link.
    // Held until everything is taken down again.
    let lock = LinkLock::acquire(cfg)?;
    if let Some(pid) = running_pid(cfg)? {
        return Err(DaemonError::AlreadyUp {
            name: cfg.name.clone(),
            link: cfg.command_line_name(),
            pid,
        });
    }
    let keys = cfg.peer_keys()?;
    // Signals are read from a signalfd by the worker; block them in every
    // thread (threads spawned later inherit the mask).
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGTERM);
    mask.add(Signal::SIGINT);
    // SIGHUP reloads the config and key files (as `bridge-ctl reload`); it
    // never stops the link.
    mask.add(Signal::SIGHUP);
    mask.thread_block().map_err(DaemonError::BlockSignals)?;
    let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(DaemonError::SignalFd)?;

    let mut setup = Setup {
        nl: Netlink::new().map_err(DaemonError::NetlinkSocket)?,
        changes: Changes::new(),
        socket: None,
        registration: None,
    };
    let up = bring_up(cfg, &keys, &mut setup);
    let (mut worker, first, others, tcp_fd, env) = match up {
        Ok(x) => x,
        Err(e) => {
            setup.undo();
            return Err(e);
        }
    };
    drop(keys);
    // The down hooks that pair with the up hooks that just ran. A reload may
    // change [hooks] later, but undoing what these up hooks did is the job
    // of the down hooks configured with them, so `link down` runs these.
    let paired_down = cfg.hooks.down.clone();
    let summary = format!(
        "link {} up: {} ({}), {} peer{}, listening on {}, pid {}, site name {:?}",
        cfg.name,
        worker.info.interface.name,
        worker.info.interface.mac,
        cfg.peers.len(),
        if cfg.peers.len() == 1 { "" } else { "s" },
        worker.info.listen,
        std::process::id(),
        cfg.tunnel.name
    );
    tracing::info!("{summary}");
    ready(&summary);
    worker.sd.ready(&summary);

    if !others.is_empty() {
        tracing::info!(
            "{} workers, one per TAP queue and UDP socket",
            others.len() + 1
        );
    }
    let (mut worker, first_lane, exit) =
        crate::datapath::worker::run(worker, first, others, signals, tcp_fd);
    worker.sd.stopping();
    tracing::info!("taking link {} down", cfg.name);
    if worker.config.hooks.down != paired_down || worker.config.hooks.up != cfg.hooks.up {
        tracing::info!(
            "running the down hooks configured with the up hooks that ran at link up; \
             the reloaded [hooks] up and down take effect at the next link up"
        );
    }
    for hook in &paired_down {
        if let Err(e) = hooks::run(hook, "down", &env) {
            tracing::warn!("{}", crate::error::Chain(&e));
        }
    }
    worker.persist_leases_final(&first_lane.tap);
    drop(worker);
    drop(first_lane);
    setup.undo();
    tracing::info!("link {} is down", cfg.name);
    // Before `link down` hears back: a `link up` right after it must find
    // the link free.
    drop(lock);
    if let Exit::Down(reply) = exit {
        let _ = reply.send(Response {
            ok: true,
            ..Response::default()
        });
        // Let the control thread write the answer before the process ends.
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// What [`bring_up`] hands the workers: the core, the first worker's lane
/// and the others', a duplicate of the TCP transport's epoll descriptor,
/// the hooks' environment.
type Up = (Worker, Lane, Vec<Lane>, std::os::fd::OwnedFd, HookEnv);

fn bring_up(cfg: &Config, keys: &[Vec<Psk>], setup: &mut Setup) -> Result<Up, DaemonError> {
    // Names first: a failure leaves nothing behind.
    let endpoints = crate::resolver::resolve_peers(cfg)?;
    let ifname = &cfg.interface.name;
    let nl = &mut setup.nl;
    // A TAP left by a daemon that was killed (only if no daemon answers, as
    // checked by the caller; TAPs vanish with their process, so this is a
    // belt-and-braces step). Never touches a device that is not a TAP.
    if nl.remove_stale_tap(ifname)? {
        tracing::warn!("removed a stale TAP {ifname} left by a previous instance");
    }
    // Offloads: the kernel hands over 64 KiB TCP batches and partial
    // checksums, which the other site's kernel completes. TSO only when a
    // 64 KiB batch fits the tunnel's 64 fragments on this WAN MTU.
    // With a discovered MTU the worst case is the floor of the search.
    let tso = tso_fits(match cfg.tunnel.wan_mtu {
        WanMtu::Fixed(n) => n,
        WanMtu::Auto => BASE_MTU as u32,
    });
    let workers = cfg.tunnel.workers;
    let tap = Tap::create_offload(ifname, workers, tso).map_err(DaemonError::CreateTap)?;
    let link = nl
        .link_by_name(ifname)?
        .ok_or_else(|| DaemonError::TapVanished {
            name: ifname.clone(),
        })?;
    let idx = link.index;
    setup.changes.record(Change::Created {
        index: idx,
        name: ifname.clone(),
    });
    if link.mtu != cfg.interface.mtu {
        nl.set_mtu(idx, cfg.interface.mtu)?;
    }
    // Without a configured MAC, a stable one: the same across restarts, so
    // neighbours' ARP caches and DHCP clients' idea of the server stay valid.
    let mac = cfg.interface.mac.unwrap_or_else(|| stable_mac(cfg));
    nl.set_mac(idx, mac)?;
    // One socket per worker, all on the listen port; a steering program
    // sends each peer's datagrams to one of them.
    let listen_udp = |source| DaemonError::ListenUdp {
        addr: cfg.tunnel.listen,
        source,
    };
    let udp_options = UdpOptions {
        gro: true,
        reuse_port: workers > 1,
        ..UdpOptions::default()
    };
    if workers > 1 {
        // SO_REUSEPORT would let us join another daemon's group on this
        // port (and share its traffic) where a plain bind fails: bind
        // plainly first, so a port in use is refused as with one worker.
        UdpSocket::bind(cfg.tunnel.listen, &UdpOptions::default()).map_err(listen_udp)?;
    }
    let udp = UdpSocket::bind(cfg.tunnel.listen, &udp_options).map_err(listen_udp)?;
    let mut sockets = vec![udp];
    for worker in 1..workers {
        let addr = sockets[0].local_addr();
        let udp = UdpSocket::bind(addr, &udp_options).map_err(|source| DaemonError::WorkerUdp {
            worker,
            addr,
            source,
        })?;
        sockets.push(udp);
    }
    if workers > 1
        && let Err(e) = sockets[0].steer_by_source(workers as u32)
    {
        tracing::warn!(
            "cannot steer datagrams to workers by their source ({e}); the kernel's hash \
             picks instead"
        );
    }
    if let Some(br) = &cfg.interface.bridge {
        nl.enslave(idx, br)?;
        setup.changes.record(Change::Enslaved {
            index: idx,
            bridge: br.clone(),
        });
    }
    nl.set_up(idx)?;
    setup.changes.record(Change::LinkUp { index: idx });
    for a in &cfg.interface.addresses {
        nl.add_address(idx, a.addr, a.prefix_len)?;
        setup.changes.record(Change::Address {
            index: idx,
            addr: a.addr,
            prefix_len: a.prefix_len,
        });
    }
    for r in &cfg.interface.routes {
        nl.add_route(r.dest.addr, r.dest.prefix_len, r.via, idx)?;
        setup.changes.record(Change::Route {
            dest: r.dest.addr,
            prefix_len: r.dest.prefix_len,
            via: r.via,
            oif: idx,
        });
    }

    let responder = build_responder(cfg, mac)?;
    let now = Instant::now();
    let mut tunnel = Tunnel::new(
        TunnelParams {
            local_name: cfg.tunnel.name.clone(),
            peers: cfg
                .peers
                .iter()
                .zip(keys)
                .zip(&endpoints)
                .map(|((p, keys), endpoints)| PeerParams {
                    name: p.name.clone(),
                    keys: keys
                        .iter()
                        .map(|k| PresharedKey::new(*k.as_bytes()))
                        .collect(),
                    endpoints: endpoints.clone(),
                })
                .collect(),
            keepalive: cfg.tunnel.keepalive,
            rekey_after: cfg.tunnel.rekey_after,
            rekey_after_packets: REKEY_AFTER_PACKETS,
            // Auto: the search's ceiling until the worker reads the WAN
            // side's own limit for each peer (after each handshake): 1500,
            // what nearly every WAN interface allows, so a first probe is
            // never one the kernel refuses outright; a jumbo path is found
            // once the route's MTU has been read.
            wan_mtu: match cfg.tunnel.wan_mtu {
                WanMtu::Fixed(n) => n as usize,
                WanMtu::Auto => INITIAL_AUTO_CEILING,
            },
            auto_mtu: cfg.tunnel.wan_mtu == WanMtu::Auto,
            transport: cfg.tunnel.transport.into(),
            max_frame: if tso {
                GSO_FRAME_MAX
            } else {
                cfg.interface.mtu as usize + 18 + VNET_HDR_LEN
            },
        },
        Box::new(OsEntropy),
        now,
        SystemTime::now(),
    );
    // A standby box of a pair talks to no peer until it is promoted.
    tunnel.set_standby(cfg.start_role() == crate::role::Role::Standby, now);
    // The TAP hands over frames behind a virtio-net header (`vnet_hdr`
    // below): count a segmentation batch as the frames it carries.
    tunnel.set_offload_header(true);
    // The workers run the DH of handshake responses without the core's
    // lock (`tunnel::deferred`).
    tunnel.set_deferred_handshakes(true);

    let server = control::server::Server::bind(
        &cfg.control.socket,
        cfg.control.group.as_deref(),
        cfg.control.admin_group.as_deref(),
    )?;
    setup.socket = Some(cfg.control.socket.clone());
    // So `status` without NAME finds the link wherever its socket is; not
    // being listed there is no reason to stay down.
    match Registration::enter(Path::new(REGISTRY_DIR), &cfg.name, &cfg.control.socket) {
        Ok(r) => setup.registration = Some(r),
        Err(e) => tracing::warn!(
            "cannot enter link {} in {REGISTRY_DIR} (status without NAME will not list it): {e}",
            cfg.name
        ),
    }
    let (to_worker, commands) = mpsc::channel();
    let waker = Arc::new(
        EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
            .map_err(DaemonError::EventFd)?,
    );
    let thread = |name| move |source| DaemonError::Thread { name, source };
    server
        .spawn(to_worker.clone(), waker.clone())
        .map_err(thread("control"))?;
    let resolver = crate::resolver::Resolver::spawn(cfg.tunnel.listen, waker.clone(), now)
        .map_err(thread("resolver"))?;
    let lease_store = crate::leases::LeaseStore::open(
        cfg.dhcp.as_ref().map(|d| d.lease_file.as_path()),
        responder.as_ref().map(|r| r.lease_db()).unwrap_or_default(),
        waker.clone(),
    )
    .unwrap_or_else(|e| {
        // As when a later write fails: logged, and clients are still served.
        tracing::error!("{}; leases are not persisted", crate::error::Chain(&e));
        Default::default()
    });
    let partner = partner_link(cfg, now)?;
    let mut lease_store = lease_store;
    lease_store.set_mirror(partner.is_some());
    // Owned by the worker (a reload rebinds it), which is dropped before the
    // rest is undone: a scrape never sees a half-torn link.
    let metrics = match &cfg.metrics {
        Some(m) => Some(MetricsServer::start(
            m.listen,
            to_worker.clone(),
            waker.clone(),
        )?),
        None => None,
    };

    let addresses = cfg.interface.address_texts();
    let env = HookEnv {
        name: cfg.name.clone(),
        interface: ifname.clone(),
        addresses: addresses.clone(),
        mtu: cfg.interface.mtu,
        wan_mtu: cfg.tunnel.wan_mtu.to_string(),
        bridge: cfg.interface.bridge.clone(),
        listen: sockets[0].local_addr(),
        transport: cfg.tunnel.transport.as_str(),
    };
    let peer_hooks = hooks::PeerHooks::start(env.clone()).map_err(thread("peer hook"))?;
    for hook in &cfg.hooks.up {
        if let Err(e) = hooks::run(hook, "up", &env) {
            // Undo what the hooks before it may have done: down hooks are
            // meant to be safe to run after a partial (or no) up.
            for down in &cfg.hooks.down {
                if let Err(d) = hooks::run(down, "down", &env) {
                    tracing::warn!("while rolling back: {}", crate::error::Chain(&d));
                }
            }
            return Err(e.into());
        }
    }
    let listen = sockets[0].local_addr();
    // The same port number on TCP, for `transport = "tcp"` / `"auto"`.
    let tcp = crate::datapath::tcp::Conns::new(
        listen,
        cfg.tunnel.transport.listens_on_tcp(),
        cfg.peers.len(),
    )
    .map_err(|source| DaemonError::ListenTcp {
        addr: listen,
        source,
    })?;
    let tcp_fd = tcp
        .as_fd()
        .try_clone_to_owned()
        .map_err(DaemonError::DupEpoll)?;
    let mut lanes = tap
        .into_queues()
        .into_iter()
        .zip(sockets)
        .map(|(queue, udp)| Lane::new(queue, udp, workers > 1));
    let first = lanes.next().ok_or_else(|| DaemonError::NoQueue {
        name: ifname.clone(),
    })?;
    let others = lanes.collect();
    Ok((
        Worker {
            config: cfg.clone(),
            keys: keys.to_vec(),
            tunnel,
            bridge: {
                let mut b = Bridge::new(
                    Switch::new(cfg.tunnel.hub),
                    Guard::new(&cfg.guard, loop_nonce(), now),
                    responder,
                    VNET_HDR_LEN,
                    cfg.peers.len(),
                );
                // The tunnel numbers peers in configuration order.
                b.set_policies(cfg.peers.iter().map(|p| p.policy.clone()).collect());
                if let Some(ha) = &cfg.ha {
                    b.set_announce(ha.announce);
                    // Going to standby announces nothing: nothing to write.
                    b.set_role(ha.start_as, now, &mut Discard);
                }
                b
            },
            lease_file: cfg.dhcp.as_ref().map(|d| d.lease_file.clone()),
            lease_store,
            lease_changes: Vec::new(),
            tcp,
            commands,
            to_worker,
            metrics,
            resolver,
            waker,
            sd: crate::sd_notify::SdNotify::from_env(),
            peer_hooks,
            info: StaticLinkInfo {
                name: cfg.name.clone(),
                interface: InterfaceStatus {
                    name: ifname.clone(),
                    mtu: cfg.interface.mtu,
                    mac,
                    addresses,
                    bridge: cfg.interface.bridge.clone(),
                },
                listen,
                started: now,
            },
            lanes_io: Default::default(),
            asleep_until: None,
            bridge_port_stale: false,
            partner,
        },
        first,
        others,
        tcp_fd,
        env,
    ))
}

/// The partner channel of a high-availability pair, when `ha.partner` is
/// set: its key loaded, its UDP port (`ha.partner`'s port number, on every
/// local address of its family) bound.
fn partner_link(
    cfg: &Config,
    now: Instant,
) -> Result<Option<crate::datapath::worker::PartnerLink>, DaemonError> {
    let Some(ha) = &cfg.ha else { return Ok(None) };
    let (Some(to), Some(key_file)) = (ha.partner, &ha.partner_psk_file) else {
        return Ok(None);
    };
    let keys = key_file.load()?;
    let Some(psk) = keys.first() else {
        return Ok(None);
    };
    let bind: std::net::SocketAddr = if to.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, to.port()).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, to.port()).into()
    };
    let sock = std::net::UdpSocket::bind(bind)
        .and_then(|s| s.set_nonblocking(true).map(|()| s))
        .map_err(|source| DaemonError::Partner { addr: bind, source })?;
    let mut boot = [0u8; 16];
    crate::tunnel::Entropy::fill(&mut OsEntropy, &mut boot);
    let core = crate::partner::Partner::new(psk.as_bytes(), boot, cfg.start_role(), now);
    tracing::info!("partner channel on UDP {bind}, partner {to}");
    Ok(Some(crate::datapath::worker::PartnerLink::new(
        core, sock, to,
    )))
}

/// A TAP that takes nothing (setting the starting role writes no frame).
struct Discard;

impl crate::bridge::ToTap for Discard {
    fn to_tap(&mut self, _packet: &[u8]) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(name: &str, listen: &str) -> Config {
        let text = format!(
            "[interface]\n[tunnel]\nlisten = \"{listen}\"\npsk_file = \"k\"\n[[peer]]\nname = \"x\"\n"
        );
        Config::parse(name, Path::new("/etc/tapbridge/x.toml"), &text).expect("valid config")
    }

    #[test]
    fn stable_mac_is_stable_local_unicast_and_differs_per_site() {
        let a = stable_mac(&config("site", "198.18.0.1:51901"));
        assert_eq!(a, stable_mac(&config("site", "198.18.0.1:51901")));
        assert_eq!(a.0[0] & 0x03, 0x02, "locally administered unicast");
        assert_ne!(a, stable_mac(&config("site", "198.18.0.2:51901")));
        assert_ne!(a, stable_mac(&config("other", "198.18.0.1:51901")));
    }
}
