//! Sliding anti-replay window over 64-bit packet counters (RFC 6479 style).
//!
//! Promises: a counter is accepted at most once; any counter within
//! [`WINDOW`] of the highest accepted one is accepted once, in any order;
//! older counters are rejected. Checking is split from marking so a packet is
//! only marked after it authenticated — a forged packet can never move the
//! window.

/// Number of counters behind the highest one that are still accepted.
pub const WINDOW: u64 = 4096 - 64;

const WORDS: usize = 64; // 64 * 64 = 4096 bits; one word of slack for the ring
const BITS: u64 = (WORDS as u64) * 64;

/// Why a counter was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// Already seen.
    Duplicate,
    /// Fell out of the back of the window.
    TooOld,
}

/// The window of one receive key.
#[derive(Clone)]
pub struct ReplayWindow {
    /// Highest accepted counter + 1 (0 = nothing accepted yet).
    next: u64,
    bitmap: [u64; WORDS],
}

impl Default for ReplayWindow {
    fn default() -> Self {
        Self::new()
    }
}

impl ReplayWindow {
    /// An empty window.
    pub fn new() -> Self {
        ReplayWindow {
            next: 0,
            bitmap: [0; WORDS],
        }
    }

    /// Would `counter` be accepted? Does not change the window.
    pub fn check(&self, counter: u64) -> Result<(), Replay> {
        if counter >= self.next {
            return Ok(());
        }
        if self.next - counter > WINDOW {
            return Err(Replay::TooOld);
        }
        let bit = counter % BITS;
        if self.bitmap[(bit / 64) as usize] & (1 << (bit % 64)) != 0 {
            Err(Replay::Duplicate)
        } else {
            Ok(())
        }
    }

    /// Checks `counter` and, if acceptable, marks it seen. Call only after the
    /// packet carrying it authenticated.
    pub fn accept(&mut self, counter: u64) -> Result<(), Replay> {
        self.check(counter)?;
        if counter >= self.next {
            // Clear the words the window slides over.
            let cur_word = self.next.wrapping_sub(1) / 64;
            let new_word = counter / 64;
            let steps = if self.next == 0 {
                WORDS as u64
            } else {
                (new_word - cur_word).min(WORDS as u64)
            };
            for i in 1..=steps {
                let w = if self.next == 0 { i - 1 } else { cur_word + i };
                self.bitmap[(w % WORDS as u64) as usize] = 0;
            }
            self.next = counter + 1;
        }
        let bit = counter % BITS;
        self.bitmap[(bit / 64) as usize] |= 1 << (bit % 64);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    #[test]
    fn in_order_and_duplicates() {
        let mut w = ReplayWindow::new();
        for c in 0..10_000 {
            assert_eq!(w.accept(c), Ok(()));
            assert_eq!(w.accept(c), Err(Replay::Duplicate));
        }
    }

    #[test]
    fn reordering_inside_window_is_fine() {
        let mut w = ReplayWindow::new();
        assert_eq!(w.accept(5000), Ok(()));
        // Everything within WINDOW behind is still acceptable, once.
        for c in (5000 - WINDOW + 1..5000).rev() {
            assert_eq!(w.accept(c), Ok(()), "counter {c}");
        }
        assert_eq!(w.accept(5000 - WINDOW), Err(Replay::TooOld));
        assert_eq!(w.accept(4000), Err(Replay::Duplicate));
    }

    #[test]
    fn window_is_at_least_2048() {
        let mut w = ReplayWindow::new();
        w.accept(10_000).expect("fresh");
        assert_eq!(w.check(10_000 - 2048), Ok(()));
    }

    #[test]
    fn big_jump_clears_everything() {
        let mut w = ReplayWindow::new();
        for c in 0..100 {
            w.accept(c).expect("fresh");
        }
        w.accept(1 << 40).expect("fresh");
        assert_eq!(w.accept(1 << 40), Err(Replay::Duplicate));
        assert_eq!(w.accept((1 << 40) - 1), Ok(()));
        assert_eq!(w.accept(50), Err(Replay::TooOld));
    }

    #[test]
    fn check_does_not_mark() {
        let mut w = ReplayWindow::new();
        assert_eq!(w.check(3), Ok(()));
        assert_eq!(w.check(3), Ok(()));
        assert_eq!(w.accept(3), Ok(()));
        assert_eq!(w.check(3), Err(Replay::Duplicate));
    }

    proptest! {
        /// Against a model: accepted iff never accepted before and within the
        /// window of the highest accepted counter.
        #[test]
        fn matches_model(ops in proptest::collection::vec(
            prop_oneof![0u64..20_000, (0u64..64).prop_map(|d| 1_000_000 + d)], 1..600)) {
            let mut w = ReplayWindow::new();
            let mut seen = HashSet::new();
            let mut max: Option<u64> = None;
            for c in ops {
                let expected_ok = !seen.contains(&c)
                    && max.is_none_or(|m| c > m || m - c < WINDOW);
                let got = w.accept(c);
                prop_assert_eq!(got.is_ok(), expected_ok, "counter {} max {:?}", c, max);
                if got.is_ok() {
                    seen.insert(c);
                    max = Some(max.map_or(c, |m| m.max(c)));
                }
            }
        }
    }
}
