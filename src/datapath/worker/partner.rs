//! The partner channel's I/O (the first worker's): its UDP socket, and
//! what the channel's core ([`crate::partner`]) decides carried out: lease
//! changes the lease store persisted are handed to it, the replicated ones
//! it returns go to the responder (and from there to the lease store, as
//! this box's own), as do the ARP bindings it lists; the remote MACs and
//! bindings of an active box are offered with each heartbeat.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Instant;

use super::Worker;
use crate::control::PartnerStatus;
use crate::leases::{LeaseChange, LeaseDb};
use crate::partner::{MAX_DATAGRAM, Partner};
use crate::peer_id::PeerId;
use crate::role::Role;

/// Datagrams read per wake-up (the rest wait for the next).
const READS: usize = 16;

/// The channel, its socket and buffers.
pub struct PartnerLink {
    core: Partner,
    sock: UdpSocket,
    to: SocketAddr,
    buf: Vec<u8>,
    apply: Vec<LeaseChange>,
    bindings: Vec<crate::partner::RemoteBinding>,
    mirrored: Vec<LeaseChange>,
    /// Send errors (logged once, counted).
    send_errors: u64,
}

impl PartnerLink {
    /// The channel to `to` over `sock` (bound, non-blocking).
    pub fn new(core: Partner, sock: UdpSocket, to: SocketAddr) -> PartnerLink {
        PartnerLink {
            core,
            sock,
            to,
            buf: vec![0; MAX_DATAGRAM.max(2048)],
            apply: Vec::new(),
            bindings: Vec::new(),
            mirrored: Vec::new(),
            send_errors: 0,
        }
    }

    /// The socket, to poll.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

/// An empty table, for a link without DHCP.
static NO_LEASES: std::sync::LazyLock<LeaseDb> = std::sync::LazyLock::new(LeaseDb::default);

impl Worker {
    /// This box's lease records (empty without DHCP).
    fn lease_records(&self) -> &LeaseDb {
        self.bridge
            .responder()
            .and_then(|r| r.lease_records())
            .unwrap_or(&NO_LEASES)
    }

    /// Reads what the partner sent and applies the leases it replicates.
    pub(super) fn drain_partner(&mut self, now: Instant) {
        let Some(mut link) = self.partner.take() else {
            return;
        };
        for _ in 0..READS {
            let (n, from) = match link.sock.recv_from(&mut link.buf) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            if from.ip() != link.to.ip() {
                continue;
            }
            let db = self.lease_records();
            link.core
                .handle_datagram(&mut link.buf[..n], now, db, &mut link.apply);
            if !link.apply.is_empty() {
                if let Some(r) = self.bridge.responder_mut() {
                    r.apply_replicated(&link.apply);
                }
                link.apply.clear();
            }
            link.core.take_bindings(&mut link.bindings);
            if !link.bindings.is_empty() {
                let peers = self.tunnel.peer_count();
                let bindings: Vec<_> = link
                    .bindings
                    .drain(..)
                    .filter(|b| usize::from(b.2) < peers)
                    .map(|(ip, mac, peer)| (ip, mac, PeerId::new(usize::from(peer))))
                    .collect();
                if let Some(r) = self.bridge.responder_mut() {
                    r.learn_replicated_bindings(&bindings, now);
                }
            }
        }
        self.partner = Some(link);
    }

    /// Hands the persisted lease changes to the channel and sends what it
    /// has to send (heartbeats, changes, a full sync).
    pub(super) fn partner_tick(&mut self, now: Instant) {
        let Some(mut link) = self.partner.take() else {
            return;
        };
        self.lease_store.take_mirrored(&mut link.mirrored);
        if !link.mirrored.is_empty() {
            link.core.queue_changes(&link.mirrored);
            link.mirrored.clear();
        }
        if link.core.macs_due(now) {
            link.core.offer_macs(self.bridge.remote_macs(now));
            let bindings = self
                .bridge
                .responder()
                .map(|r| r.remote_bindings(now))
                .unwrap_or_default();
            link.core.offer_bindings(
                bindings
                    .into_iter()
                    .filter_map(|(ip, mac, p)| Some((ip, mac, u16::try_from(p.index()).ok()?))),
            );
        }
        let db = self.lease_records();
        while let Some(n) = link.core.poll_transmit(now, db, &mut link.buf) {
            if let Err(e) = link.sock.send_to(&link.buf[..n], link.to) {
                if link.send_errors == 0 {
                    tracing::warn!("partner channel: cannot send to {}: {e}", link.to);
                }
                link.send_errors += 1;
            }
        }
        self.partner = Some(link);
    }

    /// When the channel next has something to send by itself.
    pub(super) fn partner_deadline(&self) -> Option<Instant> {
        self.partner.as_ref().and_then(|l| l.core.poll_timeout())
    }

    /// The remote MACs the partner listed lately (none without a channel).
    pub(super) fn partner_macs(&self, now: Instant) -> Vec<crate::partner::RemoteMac> {
        self.partner
            .as_ref()
            .map(|l| l.core.partner_macs(now))
            .unwrap_or_default()
    }

    /// The role changed: the channel sends accordingly.
    pub(super) fn partner_role(&mut self, role: Role) {
        if let Some(l) = self.partner.as_mut() {
            l.core.set_role(role);
        }
    }

    /// The partner part of the status: `None` without `[ha]`.
    pub(super) fn partner_status(&self, now: Instant) -> Option<PartnerStatus> {
        let ha = self.config.ha.as_ref()?;
        let endpoint = ha.partner.map(|p| p.to_string());
        let Some(link) = &self.partner else {
            return Some(PartnerStatus {
                endpoint,
                state: "off".into(),
                leases_synced: 0,
            });
        };
        let up = link.core.is_up(now);
        let ours = self.lease_records().len() as u64;
        // The active box counts what the standby says it holds; the standby
        // what it holds (all of it came from the active box).
        let synced = match (self.bridge.role(), link.core.heard()) {
            (_, None) => 0,
            (Role::Active, Some(h)) => h.leases.min(ours),
            (Role::Standby, Some(_)) => ours,
        };
        Some(PartnerStatus {
            endpoint,
            state: if up { "up" } else { "down" }.into(),
            leases_synced: synced,
        })
    }
}
