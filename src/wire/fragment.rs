//! The fragment header: the first bytes of the plaintext of a fragment
//! message (a tunnel data message of type 5).
//!
//! ```text
//! 0      4       5       6        8
//! +------+-------+-------+--------+-----------------+
//! | id   | index | count | size   | fragment data   |
//! | u32  | u8    | u8    | u16    |                 |
//! +------+-------+-------+--------+-----------------+
//! ```
//! All little-endian. `id` numbers the sender's fragmented frames; `count` is
//! 2..=64; every fragment but the last carries exactly `size` bytes, the last
//! one 1..=`size`; fragment `index` starts at byte `index * size` of the frame.
//! Parsing checks only the length; whether the numbers make sense together is
//! the reassembler's business.

/// Length of the fragment header.
pub const HEADER_LEN: usize = 8;
/// Most fragments one frame may be cut into.
pub const MAX_FRAGMENTS: usize = 64;

/// A parsed fragment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragHeader {
    /// Sender's number for the frame.
    pub id: u32,
    /// Position of this fragment.
    pub index: u8,
    /// Number of fragments of the frame.
    pub count: u8,
    /// Bytes carried by every fragment but the last.
    pub size: u16,
}

impl FragHeader {
    /// Parses the header at the start of `buf`.
    pub fn parse(buf: &[u8]) -> Option<FragHeader> {
        let b = buf.get(..HEADER_LEN)?;
        Some(FragHeader {
            id: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            index: b[4],
            count: b[5],
            size: u16::from_le_bytes([b[6], b[7]]),
        })
    }

    /// Writes the header into the first [`HEADER_LEN`] bytes of `buf`.
    pub fn emit(&self, buf: &mut [u8]) {
        buf[..4].copy_from_slice(&self.id.to_le_bytes());
        buf[4] = self.index;
        buf[5] = self.count;
        buf[6..8].copy_from_slice(&self.size.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_roundtrip() {
        let h = FragHeader {
            id: 0xdead_beef,
            index: 3,
            count: 7,
            size: 1234,
        };
        let mut b = [0u8; 8];
        h.emit(&mut b);
        assert_eq!(b, [0xef, 0xbe, 0xad, 0xde, 3, 7, 0xd2, 0x04]);
        assert_eq!(FragHeader::parse(&b), Some(h));
        assert_eq!(FragHeader::parse(&b[..7]), None);
    }
}
