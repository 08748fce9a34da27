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
///
/// The offers live in slots; the indexes and the queues name a slot, and a
/// queue entry carries the `seq` of the offer it was made for, so telling a
/// stale entry (its offer answered, moved on or replaced) from a current
/// one costs an array index, not a lookup by client key.
#[derive(Debug, Default)]
pub(super) struct HeldSet {
    slots: Vec<Option<Held>>,
    /// Slots whose offer is gone, for the next one.
    vacant: Vec<usize>,
    by_key: HashMap<Box<[u8]>, usize>,
    /// Address → the slot of the offer held for it.
    by_ip: HashMap<Ipv4Addr, usize>,
    /// Steps due at once (an address to replace, an OFFER answered early),
    /// oldest first: (since, seq, slot).
    now: VecDeque<Entry>,
    /// Probes waiting for the end of their slot, in the order they fall due.
    probes: VecDeque<Entry>,
    /// OFFERs waiting out their hold, in the order they fall due.
    later: VecDeque<Entry>,
    next_seq: u64,
}

/// A queue entry: when it falls due, the `seq` of the offer it stands for,
/// and that offer's slot.
type Entry = (Instant, u64, usize);

/// Whether a queue entry still stands for a held offer (the one in its
/// slot is the one it was queued for).
fn current(slots: &[Option<Held>], seq: u64, slot: usize) -> bool {
    slots
        .get(slot)
        .and_then(Option::as_ref)
        .is_some_and(|h| h.seq == seq)
}

impl HeldSet {
    pub(super) fn len(&self) -> usize {
        self.by_key.len()
    }

    /// The held offer of the client `key`.
    pub(super) fn get_mut(&mut self, key: &[u8]) -> Option<&mut Held> {
        let slot = *self.by_key.get(key)?;
        self.slots.get_mut(slot)?.as_mut()
    }

    /// The held offer of the address `ip`.
    pub(super) fn at_ip(&self, ip: Ipv4Addr) -> Option<&Held> {
        let slot = *self.by_ip.get(&ip)?;
        self.slots.get(slot)?.as_ref()
    }

    /// Holds `h`, its step due at `h.at`: a probe's and an OFFER's time is
    /// moved to the end of its slot, any other step is due at once.
    pub(super) fn insert(&mut self, mut h: Held) {
        // A client held already (not the case today: it is taken out
        // first) is replaced, its address index with it.
        self.remove(&h.key);
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
        let slot = match self.vacant.pop() {
            Some(slot) => slot,
            None => {
                self.slots.push(None);
                self.slots.len() - 1
            }
        };
        queue.push_back((h.at, h.seq, slot));
        // Two clients are never offered one address (the allocator's
        // rule); should it happen, the older offer keeps the index.
        self.by_ip.entry(h.ip).or_insert(slot);
        self.by_key.insert(h.key.clone(), slot);
        self.slots[slot] = Some(h);
    }

    /// The held offer of `key`, taken out.
    pub(super) fn remove(&mut self, key: &[u8]) -> Option<Held> {
        let slot = *self.by_key.get(key)?;
        self.take(slot)
    }

    /// The held offer of the address `ip`, taken out.
    pub(super) fn remove_at_ip(&mut self, ip: Ipv4Addr) -> Option<Held> {
        let slot = *self.by_ip.get(&ip)?;
        self.take(slot)
    }

    /// The offer in `slot`, taken out of the slot and both indexes; its
    /// queue entries are stale from now on (those at the fronts dropped).
    fn take(&mut self, slot: usize) -> Option<Held> {
        let h = self.slots.get_mut(slot)?.take()?;
        self.vacant.push(slot);
        self.by_key.remove(&h.key);
        if self.by_ip.get(&h.ip) == Some(&slot) {
            self.by_ip.remove(&h.ip);
        }
        self.prune();
        Some(h)
    }

    /// Drops the queue entries at the fronts that no longer stand for a
    /// held offer, so [`HeldSet::next_due`] names a real one (entries
    /// further back are skipped when they reach the front).
    fn prune(&mut self) {
        for queue in [&mut self.now, &mut self.probes, &mut self.later] {
            while let Some(&(_, seq, slot)) = queue.front() {
                if current(&self.slots, seq, slot) {
                    break;
                }
                queue.pop_front();
            }
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
        let (_, _, slot) = queue.pop_front()?;
        self.take(slot)
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
            while let Some((_, seq, slot)) = queue.pop_front() {
                if current(&self.slots, seq, slot) {
                    oldest = Some((seq, slot));
                    break;
                }
            }
            if oldest.is_some() {
                break;
            }
        }
        let Some((seq, slot)) = oldest else {
            return false;
        };
        if let Some(h) = self.slots.get_mut(slot).and_then(Option::as_mut) {
            h.step = Step::Offer;
            h.at = at;
        }
        self.now.push_back((at, seq, slot));
        true
    }
}
