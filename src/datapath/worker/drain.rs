//! A worker's reads: its socket's datagrams and its TAP queue's frames,
//! handed to the core under its lock in bounded batches.

use std::io;
use std::sync::Mutex;
use std::time::{Instant, SystemTime};

use super::{BATCH, FRAME_DATAGRAMS, Lane, SEND_WAIT_MS, TAP_READS, Worker, lock};

/// Reads `lane`'s socket (a few batches at most, so the TAP side is not
/// starved) and hands each batch to the core under its lock.
pub(super) fn drain_udp(
    core: &Mutex<Worker>,
    lane: &mut Lane,
    first: bool,
    now: Instant,
    wall: SystemTime,
) {
    for _ in 0..4 {
        let n = match lane.udp.recv_batch(&mut lane.b.rx) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!("UDP receive failed: {e}");
                return;
            }
        };
        let mut w = lock(core);
        w.tunnel.set_wall_clock(now, wall);
        w.take_datagrams(lane, n, now);
        w.tunnel.take_handshake_jobs(&mut lane.jobs);
        if !lane.jobs.is_empty() {
            // The DH of each response without the lock, so the other
            // workers' frames do not wait for it; then back to send them.
            drop(w);
            for job in &mut lane.jobs {
                job.run();
            }
            w = lock(core);
            w.finish_handshakes(lane, now);
        }
        if !first {
            w.hand_over(&mut lane.io, false);
        }
        drop(w);
        lane.write_staged();
        if n < lane.b.rx.capacity() {
            return;
        }
    }
}

/// Reads `lane`'s TAP queue and hands what it read to the core under its
/// lock. While frames come faster than the worker sleeps
/// ([`Lane::tap_busy`]), [`TAP_READS`] frames at a time, up to [`BATCH`] in
/// all. Otherwise one frame, sent on at once, and no read after it: one
/// that finds the queue empty would delay the worker's sleep, and with it
/// whatever its send woke on the same CPU (a socket wakes its reader there,
/// expecting the waker to sleep); the next wait finds any other frame, and
/// finding it at once says frames come fast.
pub(super) fn drain_tap(
    core: &Mutex<Worker>,
    lane: &mut Lane,
    first: bool,
    now: Instant,
    wall: SystemTime,
) {
    let busy = lane.tap_busy;
    let mut read = 0;
    while read < BATCH {
        let want = if busy { TAP_READS.min(BATCH - read) } else { 1 };
        let mut count = 0;
        while count < want {
            match lane.tap.read(&mut lane.b.frames[count]) {
                Ok(n) => {
                    lane.b.lens[count] = n;
                    count += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::warn!("TAP read failed: {e}");
                    break;
                }
            }
        }
        if count == 0 {
            break;
        }
        let (mut taken, mut room) = (0, FRAME_DATAGRAMS);
        loop {
            let mut w = lock(core);
            w.tunnel.set_wall_clock(now, wall);
            let answered;
            (answered, taken) = w.take_frames(lane, taken..count, room, now, wall);
            if first {
                lane.answered |= answered;
            } else {
                w.hand_over(&mut lane.io, answered);
            }
            drop(w);
            if taken == count {
                break;
            }
            // The socket is full: wait for room without the lock, so the
            // other workers keep forwarding meanwhile. Once: if the socket
            // is still full, the rest is taken and what does not fit is
            // dropped (counted), as before this wait.
            lane.wait_writable(SEND_WAIT_MS);
            if lane.b.out.batch.free() < FRAME_DATAGRAMS {
                room = 0;
            }
        }
        read += count;
        if !busy || count < want {
            break;
        }
    }
    // A lone frame: the next one is taken alone again.
    lane.tap_busy = busy && read > 1;
}
