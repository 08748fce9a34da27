//! Records of the TCP transport: the tunnel's messages over a byte stream.
//!
//! ```text
//! 0        2
//! +--------+------------------------------------------+
//! | length | one tunnel message, exactly as it would   |
//! | u16 BE | travel as a UDP payload (1..=65535 bytes) |
//! +--------+------------------------------------------+
//! ```
//!
//! A zero length is malformed (no message is empty), and so the connection
//! carrying it is broken. [`RecordReader`] takes bytes as the socket gives
//! them and hands out whole records; it never holds more than one record
//! plus its header, so what a TCP peer can make us buffer is bounded.
//! [`RecordQueue`] holds records on their way out, bounded too: a record that
//! does not fit is refused whole, never cut.

/// Length of the record header.
pub const HEADER_LEN: usize = 2;
/// Largest message one record carries.
pub const MAX_MESSAGE: usize = u16::MAX as usize;

/// The stream broke the record format: the connection must be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

/// Bytes a reader takes when the first bytes arrive: a handshake record
/// and a few small ones. It grows to the largest record only when full.
pub const READER_INITIAL: usize = 2048;

/// Reassembles records from a byte stream, in one buffer that is allocated
/// when the first bytes arrive (a connection that sends nothing costs
/// nothing), [`READER_INITIAL`] bytes first and the room for the largest
/// record once that is not enough.
pub struct RecordReader {
    buf: Box<[u8]>,
    /// Bytes before `start` were handed out already.
    start: usize,
    /// Bytes `start..end` are received and not yet handed out.
    end: usize,
}

impl Default for RecordReader {
    fn default() -> Self {
        RecordReader::new()
    }
}

impl RecordReader {
    /// An empty reader; nothing allocated yet.
    pub fn new() -> Self {
        RecordReader {
            buf: Box::default(),
            start: 0,
            end: 0,
        }
    }

    /// Where the next bytes from the stream go (never empty: a whole record
    /// always fits once the handed-out bytes are dropped).
    pub fn spare(&mut self) -> &mut [u8] {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            // Empty (nothing allocated yet) or full: the first size, or the
            // largest. Full at the largest cannot happen: a whole record
            // fits, and `next_message` hands it out.
            let size = if self.buf.is_empty() {
                READER_INITIAL
            } else {
                HEADER_LEN + MAX_MESSAGE
            };
            let mut bigger = vec![0; size].into_boxed_slice();
            bigger[..self.end].copy_from_slice(&self.buf[..self.end]);
            self.buf = bigger;
        }
        &mut self.buf[self.end..]
    }

    /// Bytes allocated for the stream now.
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// `n` bytes were written into [`spare`](Self::spare).
    pub fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }

    /// The next whole record's message, if one is complete; `Err` if the
    /// stream is not a record stream.
    pub fn next_message(&mut self) -> Result<Option<&mut [u8]>, Malformed> {
        let have = self.end - self.start;
        if have < HEADER_LEN {
            return Ok(None);
        }
        let len = usize::from(u16::from_be_bytes([
            self.buf[self.start],
            self.buf[self.start + 1],
        ]));
        if len == 0 {
            return Err(Malformed);
        }
        if have < HEADER_LEN + len {
            return Ok(None);
        }
        let at = self.start + HEADER_LEN;
        self.start = at + len;
        if self.start == self.end {
            // Everything handed out: the next read starts at the front (the
            // message stays intact until then).
            self.start = 0;
            self.end = 0;
        }
        Ok(Some(&mut self.buf[at..at + len]))
    }

    /// Bytes received and not handed out yet.
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }
}

/// Records waiting to be written to a stream, up to a byte limit.
pub struct RecordQueue {
    buf: Vec<u8>,
    /// Bytes before `sent` were written already.
    sent: usize,
    limit: usize,
}

impl RecordQueue {
    /// An empty queue that holds at most `limit` bytes (headers included).
    /// Memory is taken as records arrive, up to the limit, and then kept.
    pub fn new(limit: usize) -> Self {
        RecordQueue {
            buf: Vec::new(),
            sent: 0,
            limit,
        }
    }

    /// Appends `message` as one record; `false` (and nothing queued) if it
    /// is empty, too large for a record or does not fit the limit.
    pub fn push(&mut self, message: &[u8]) -> bool {
        if message.is_empty() || message.len() > MAX_MESSAGE {
            return false;
        }
        if self.pending().len() + HEADER_LEN + message.len() > self.limit {
            return false;
        }
        if self.sent == self.buf.len() {
            self.buf.clear();
            self.sent = 0;
        } else if self.sent > 0 && self.buf.len() + HEADER_LEN + message.len() > self.limit {
            // Make room at the front rather than grow past the limit.
            self.buf.drain(..self.sent);
            self.sent = 0;
        }
        self.buf
            .extend_from_slice(&(message.len() as u16).to_be_bytes());
        self.buf.extend_from_slice(message);
        true
    }

    /// Bytes not written yet.
    pub fn pending(&self) -> &[u8] {
        &self.buf[self.sent..]
    }

    /// The first `n` pending bytes were written.
    pub fn consume(&mut self, n: usize) {
        self.sent = (self.sent + n).min(self.buf.len());
        if self.sent == self.buf.len() {
            self.buf.clear();
            self.sent = 0;
        }
    }

    /// Drops everything queued (the connection is gone).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.sent = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn feed(r: &mut RecordReader, bytes: &[u8]) -> Result<Vec<Vec<u8>>, Malformed> {
        let mut out = Vec::new();
        let mut rest = bytes;
        while !rest.is_empty() {
            let spare = r.spare();
            let n = spare.len().min(rest.len());
            spare[..n].copy_from_slice(&rest[..n]);
            r.filled(n);
            rest = &rest[n..];
            while let Some(m) = r.next_message()? {
                out.push(m.to_vec());
            }
        }
        Ok(out)
    }

    #[test]
    fn a_zero_length_breaks_the_stream() {
        let mut r = RecordReader::new();
        assert_eq!(feed(&mut r, &[0, 0, 1, 2]), Err(Malformed));
    }

    #[test]
    fn the_largest_record_fits_and_a_partial_one_waits() {
        let mut q = RecordQueue::new(1 << 20);
        let big = vec![7u8; MAX_MESSAGE];
        assert!(q.push(&big));
        assert!(!q.push(&vec![1u8; MAX_MESSAGE + 1]), "too large");
        assert!(!q.push(&[]), "empty");
        let wire = q.pending().to_vec();
        let mut r = RecordReader::new();
        assert!(feed(&mut r, &wire[..1000]).expect("fine").is_empty());
        assert_eq!(r.buffered(), 1000);
        let got = feed(&mut r, &wire[1000..]).expect("fine");
        assert_eq!(got, vec![big]);
        assert_eq!(r.buffered(), 0);
    }

    #[test]
    fn memory_is_taken_as_records_need_it() {
        let mut r = RecordReader::new();
        assert_eq!(r.capacity(), 0, "nothing before the first bytes");
        let mut q = RecordQueue::new(1 << 20);
        assert!(q.push(&[1u8; 148]));
        assert_eq!(feed(&mut r, q.pending()).expect("fine").len(), 1);
        assert_eq!(
            r.capacity(),
            READER_INITIAL,
            "a handshake fits the first size"
        );
        let mut q = RecordQueue::new(1 << 20);
        assert!(q.push(&vec![2u8; 9000]));
        assert_eq!(
            feed(&mut r, q.pending()).expect("fine"),
            vec![vec![2u8; 9000]]
        );
        assert_eq!(r.capacity(), HEADER_LEN + MAX_MESSAGE);
    }

    #[test]
    fn the_queue_refuses_what_does_not_fit_and_keeps_order() {
        let mut q = RecordQueue::new(10);
        assert!(q.push(&[1, 2, 3]));
        assert!(q.push(&[4, 5, 6]));
        assert!(!q.push(&[7]), "5 + 5 + 3 > 10");
        q.consume(4);
        assert_eq!(q.pending(), &[3, 0, 3, 4, 5, 6]);
        assert!(q.push(&[8, 9]), "room made at the front");
        assert_eq!(q.pending(), &[3, 0, 3, 4, 5, 6, 0, 2, 8, 9]);
        q.consume(100);
        assert!(q.pending().is_empty());
    }

    proptest! {
        /// Whatever the messages and however the stream is cut into reads,
        /// the reader hands out exactly the messages queued, in order.
        #[test]
        fn records_survive_any_split(
            msgs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..3000), 0..20),
            cuts in proptest::collection::vec(1usize..5000, 1..40),
        ) {
            let mut q = RecordQueue::new(usize::MAX);
            for m in &msgs {
                prop_assert!(q.push(m));
            }
            let wire = q.pending().to_vec();
            let mut r = RecordReader::new();
            let mut got = Vec::new();
            let mut at = 0;
            for c in cuts.iter().cycle() {
                if at >= wire.len() {
                    break;
                }
                let end = (at + c).min(wire.len());
                got.extend(feed(&mut r, &wire[at..end]).expect("well formed"));
                at = end;
            }
            prop_assert_eq!(got, msgs);
        }

        /// Arbitrary bytes never panic the reader, and it never holds more
        /// than one record.
        #[test]
        fn garbage_is_bounded(bytes in proptest::collection::vec(any::<u8>(), 0..200_000)) {
            let mut r = RecordReader::new();
            let _ = feed(&mut r, &bytes);
            prop_assert!(r.buffered() <= HEADER_LEN + MAX_MESSAGE);
        }
    }
}
