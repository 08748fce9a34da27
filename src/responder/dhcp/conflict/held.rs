//! The offers held for their probes ([`HeldSet`]): each with its step,
//! indexed by client and by address, in the order they fall due.

use std::collections::{HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use crate::mac::MacAddr;

/// What a held offer waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// Its probe is to be sent.
    Probe,
    /// The probe went out; the OFFER goes at `at`.
    Offer,
    /// Someone else uses the address: set it aside, try another.
    Repick,
}

/// A DISCOVER whose OFFER waits for its probe.
#[derive(Debug)]
pub(super) struct Held {
    /// The client's key (option 61 or `01 ‖ chaddr`).
    pub(super) key: Box<[u8]>,
    /// The key is the client's option 61 (echoed in the OFFER).
    pub(super) client_id: bool,
    pub(super) chaddr: MacAddr,
    pub(super) xid: u32,
    pub(super) broadcast: bool,
    pub(super) requested: Option<Ipv4Addr>,
    pub(super) ip: Ipv4Addr,
    pub(super) step: Step,
    /// When the step is due.
    pub(super) at: Instant,
    /// Addresses tried so far.
    pub(super) tried: u8,
    /// Which queue entry is this offer's current one (older entries for
    /// the same client are stale and skipped).
    pub(super) seq: u64,
}

/// The offers held for their probes: by client, by address, and the order
/// they fall due in. A probe falls due when it is held (up to
/// [`PROBE_SLACK`](super::PROBE_SLACK) later, with the others of its slot),
/// an OFFER [`PROBE_HOLD`](super::PROBE_HOLD) after its probe (up to
/// [`OFFER_SLACK`](super::OFFER_SLACK) later, likewise), every other step at
/// once; so three FIFO queues keep them in order: no scan of the held
/// offers per DISCOVER, ARP frame or timer.
#[derive(Debug, Default)]
pub(super) struct HeldSet {
    pub(super) by_key: HashMap<Box<[u8]>, Held>,
    /// Address → the client whose held offer it is.
    pub(super) by_ip: HashMap<Ipv4Addr, Box<[u8]>>,
    /// Steps due at once (an address to replace, an OFFER answered early),
    /// oldest first: (since, seq, client).
    pub(super) now: VecDeque<(Instant, u64, Box<[u8]>)>,
    /// Probes waiting for the end of their slot, in the order they fall due.
    pub(super) probes: VecDeque<(Instant, u64, Box<[u8]>)>,
    /// OFFERs waiting out their hold, in the order they fall due.
    pub(super) later: VecDeque<(Instant, u64, Box<[u8]>)>,
    pub(super) next_seq: u64,
}

/// Whether a queue entry still stands for a held offer (its client's
/// latest).
fn current(by_key: &HashMap<Box<[u8]>, Held>, seq: u64, key: &[u8]) -> bool {
    by_key.get(key).is_some_and(|h| h.seq == seq)
}

impl HeldSet {
    pub(super) fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Holds `h`, its step due at `h.at`: a probe's and an OFFER's time is
    /// moved to the end of its slot, any other step is due at once.
    pub(super) fn insert(&mut self, mut h: Held) {
        self.next_seq += 1;
        h.seq = self.next_seq;
        let (queue, slack) = match h.step {
            Step::Probe => (&mut self.probes, super::PROBE_SLACK),
            Step::Offer => (&mut self.later, super::OFFER_SLACK),
            Step::Repick => (&mut self.now, Duration::ZERO),
        };
        // Slots: a step due no later than the last one queued goes out with
        // it; one due after it opens a slot that ends `slack` later. Times
        // stay in order, each queue a FIFO.
        h.at = match queue.back() {
            Some(&(last, _, _)) if h.at <= last => last,
            _ => h.at + slack,
        };
        queue.push_back((h.at, h.seq, h.key.clone()));
        // A client held already (not the case today: it is taken out
        // first) is replaced, its address index with it.
        if let Some(prev) = self.by_key.remove(&h.key) {
            self.unindex(&prev);
        }
        if let Some(old) = self.by_ip.insert(h.ip, h.key.clone())
            && *old != *h.key
        {
            // Two clients are never offered one address (the allocator's
            // rule); should it happen, the older offer keeps the index.
            self.by_ip.insert(h.ip, old);
        }
        self.by_key.insert(h.key.clone(), h);
    }

    /// The held offer of `key`, taken out.
    pub(super) fn remove(&mut self, key: &[u8]) -> Option<Held> {
        let h = self.by_key.remove(key)?;
        self.unindex(&h);
        self.prune();
        Some(h)
    }

    /// Drops the queue entries at the fronts that no longer stand for a
    /// held offer, so [`HeldSet::next_due`] names a real one (entries
    /// further back are skipped when they reach the front).
    pub(super) fn prune(&mut self) {
        for queue in [&mut self.now, &mut self.probes, &mut self.later] {
            while let Some((_, seq, key)) = queue.front() {
                if current(&self.by_key, *seq, key) {
                    break;
                }
                queue.pop_front();
            }
        }
    }

    pub(super) fn unindex(&mut self, h: &Held) {
        if self.by_ip.get(&h.ip).is_some_and(|k| **k == *h.key) {
            self.by_ip.remove(&h.ip);
        }
    }

    /// The next held offer whose step is due at `at`, taken out: any due
    /// at once, then the probe or OFFER due first.
    pub(super) fn pop_due(&mut self, at: Instant) -> Option<Held> {
        self.prune();
        let queue = if self.now.is_empty() {
            let (probe, offer) = (self.probes.front(), self.later.front());
            let first = probe.into_iter().chain(offer).map(|e| e.0).min()?;
            if first > at {
                return None;
            }
            if probe.is_some_and(|e| e.0 == first) {
                &mut self.probes
            } else {
                &mut self.later
            }
        } else {
            &mut self.now
        };
        let (_, _, key) = queue.pop_front()?;
        self.remove(&key)
    }

    /// When the next step falls due (a stale queue entry may make it early:
    /// a wake-up that finds nothing to do).
    pub(super) fn next_due(&self) -> Option<Instant> {
        [&self.now, &self.probes, &self.later]
            .into_iter()
            .filter_map(|q| q.front().map(|e| e.0))
            .min()
    }

    /// The set is full: the held offer waiting longest goes out at `at`,
    /// without waiting out its hold: the OFFER due first, else (none was
    /// probed yet) the oldest waiting for its probe. Whether there was one.
    pub(super) fn answer_oldest_at(&mut self, at: Instant) -> bool {
        let mut oldest = None;
        for queue in [&mut self.later, &mut self.probes, &mut self.now] {
            while let Some((_, seq, key)) = queue.pop_front() {
                if current(&self.by_key, seq, &key) {
                    oldest = Some((seq, key));
                    break;
                }
            }
            if oldest.is_some() {
                break;
            }
        }
        let Some((seq, key)) = oldest else {
            return false;
        };
        if let Some(h) = self.by_key.get_mut(&key) {
            h.step = Step::Offer;
            h.at = at;
        }
        self.now.push_back((at, seq, key));
        true
    }
}
