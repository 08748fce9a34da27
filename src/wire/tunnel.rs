//! The tunnel's UDP payload formats: byte layouts and checked views.
//!
//! The meaning of each field, and the cryptography around them, are described
//! in the documentation of the `tunnel` module. This module only promises: once a view was built with
//! `new_checked`, no accessor panics. It knows nothing of keys or sessions.

/// Length of an AES-GCM tag (data messages and handshake payloads).
pub const TAG_LEN: usize = 16;
/// Length of the truncated handshake MAC that ends both handshake messages.
pub const MAC_LEN: usize = 16;

/// Protocol version, in byte 1 of every datagram.
pub const VERSION: u8 = 3;

/// Length of the key hint an initiation carries (see [`field::INIT_HINT`]).
pub const HINT_LEN: usize = 8;

/// The first byte of every tunnel datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    /// Handshake initiation (`-> psk, e`).
    Initiation,
    /// Handshake response (`<- e, ee`).
    Response,
    /// The responder is under load and asks for a cookie round trip.
    CookieReply,
    /// A whole Ethernet frame, or empty as a keepalive.
    Data,
    /// A piece of an Ethernet frame too large for one datagram.
    Fragment,
    /// A path MTU probe or its acknowledgement (sealed like data; the
    /// plaintext is a [`probe`] body, padded to the size being probed).
    Probe,
}

impl MessageType {
    /// Wire value.
    pub const fn code(self) -> u8 {
        match self {
            MessageType::Initiation => 1,
            MessageType::Response => 2,
            MessageType::CookieReply => 3,
            MessageType::Data => 4,
            MessageType::Fragment => 5,
            MessageType::Probe => 6,
        }
    }

    /// Reads the type of a datagram: the type byte must be known, the
    /// version byte [`VERSION`] and the two reserved bytes zero.
    pub fn of(buf: &[u8]) -> Option<MessageType> {
        let head = buf.get(..4)?;
        if head[1] != VERSION || head[2..4] != [0, 0] {
            return None;
        }
        match head[0] {
            1 => Some(MessageType::Initiation),
            2 => Some(MessageType::Response),
            3 => Some(MessageType::CookieReply),
            4 => Some(MessageType::Data),
            5 => Some(MessageType::Fragment),
            6 => Some(MessageType::Probe),
            _ => None,
        }
    }

    /// The first four bytes of a message of this type.
    pub const fn head(self) -> [u8; 4] {
        [self.code(), VERSION, 0, 0]
    }
}

/// The protocol version of a handshake initiation of an older version this
/// release refuses: 1 (124 bytes, type 1, three zero bytes) or 2 (140
/// bytes, type 1, version 2, two zero bytes). A peer that sends one needs an
/// upgrade; it is never answered.
pub fn old_initiation_version(buf: &[u8]) -> Option<u8> {
    match (buf.len(), buf.get(..4)?) {
        (124, [1, 0, 0, 0]) => Some(1),
        (140, [1, 2, 0, 0]) => Some(2),
        _ => None,
    }
}

/// Byte ranges of each message.
pub mod field {
    use core::ops::Range;

    /// Initiation: sender index.
    pub const INIT_SENDER: Range<usize> = 4..8;
    /// Initiation: key hint, a keyed hash of the pre-shared key and both
    /// names that lets the responder find the key without trying them all.
    pub const INIT_HINT: Range<usize> = 8..16;
    /// Initiation: initiator's ephemeral public key.
    pub const INIT_EPHEMERAL: Range<usize> = 16..48;
    /// Initiation: encrypted payload (52 bytes) and its tag (16).
    pub const INIT_PAYLOAD: Range<usize> = 48..116;
    /// Initiation: MAC over bytes `0..116`, keyed by the pre-shared key and
    /// the intended responder's name.
    pub const INIT_MAC1: Range<usize> = 116..132;
    /// Initiation: MAC over bytes `0..132` keyed by the responder's cookie,
    /// or zero when the initiator holds none.
    pub const INIT_MAC2: Range<usize> = 132..148;
    /// Initiation: total length.
    pub const INIT_LEN: usize = 148;

    /// Response: sender index.
    pub const RESP_SENDER: Range<usize> = 4..8;
    /// Response: receiver index (the initiator's sender index).
    pub const RESP_RECEIVER: Range<usize> = 8..12;
    /// Response: responder's ephemeral public key.
    pub const RESP_EPHEMERAL: Range<usize> = 12..44;
    /// Response: encrypted payload (the responder's TAI64N timestamp, 12
    /// bytes) and its tag (16).
    pub const RESP_PAYLOAD: Range<usize> = 44..72;
    /// Response: MAC over bytes `0..72`.
    pub const RESP_MAC: Range<usize> = 72..88;
    /// Response: total length.
    pub const RESP_LEN: usize = 88;

    /// Cookie reply: receiver index (the initiation's sender index).
    pub const COOKIE_RECEIVER: Range<usize> = 4..8;
    /// Cookie reply: random AES-GCM nonce.
    pub const COOKIE_NONCE: Range<usize> = 8..20;
    /// Cookie reply: the encrypted 16-byte cookie and its tag.
    pub const COOKIE_SEALED: Range<usize> = 20..52;
    /// Cookie reply: total length.
    pub const COOKIE_LEN: usize = 52;

    /// Data/fragment: receiver index.
    pub const DATA_RECEIVER: Range<usize> = 4..8;
    /// Data/fragment: 64-bit counter (the AEAD nonce).
    pub const DATA_COUNTER: Range<usize> = 8..16;
    /// Data/fragment: header length; the header is the AEAD's associated data.
    pub const DATA_HEADER_LEN: usize = 16;
}

/// The plaintext of a [`MessageType::Probe`] message: what it is, which
/// probe, and the outer packet size it was sent at; zero padding follows
/// (the padding is what makes a probe as large as the size it tests).
///
/// ```text
/// 0      1          5        7
/// | kind | probe id | size   | zero padding ...
///        (u32 LE)   (u16 LE)
/// ```
pub mod probe {
    /// A probe: the receiver answers with an [`ACK`] carrying the same id
    /// and size.
    pub const REQUEST: u8 = 0;
    /// The answer to a probe.
    pub const ACK: u8 = 1;
    /// Length of the body before the padding.
    pub const LEN: usize = 7;

    /// Writes a probe body into the start of `out` (at least [`LEN`] bytes)
    /// and zeroes the rest of `out`.
    pub fn emit(out: &mut [u8], kind: u8, id: u32, size: u16) {
        out.fill(0);
        out[0] = kind;
        out[1..5].copy_from_slice(&id.to_le_bytes());
        out[5..7].copy_from_slice(&size.to_le_bytes());
    }

    /// `(kind, id, size)` of a probe body, or `None` if it is too short or
    /// of an unknown kind.
    pub fn parse(body: &[u8]) -> Option<(u8, u32, u16)> {
        let b = body.get(..LEN)?;
        if b[0] != REQUEST && b[0] != ACK {
            return None;
        }
        let id = u32::from_le_bytes([b[1], b[2], b[3], b[4]]);
        Some((b[0], id, u16::from_le_bytes([b[5], b[6]])))
    }
}

/// Plaintext of the initiation payload: TAI64N timestamp, the initiator's
/// random instance id, then its link name (length byte + 31 bytes, zero
/// padded).
pub mod init_payload {
    use core::ops::Range;
    /// TAI64N timestamp (8 bytes seconds, 4 bytes nanoseconds, big-endian).
    pub const TIMESTAMP: Range<usize> = 0..12;
    /// Random id of the sending tunnel instance, so it can recognise (and
    /// refuse) its own initiations reflected back at it.
    pub const INSTANCE: Range<usize> = 12..20;
    /// Length of the name that follows.
    pub const NAME_LEN: usize = 20;
    /// The name bytes.
    pub const NAME: Range<usize> = 21..52;
    /// Plaintext length.
    pub const LEN: usize = 52;
}

fn u32_at(buf: &[u8], r: core::ops::Range<usize>) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[r]);
    u32::from_le_bytes(b)
}

fn key_at(buf: &[u8], r: core::ops::Range<usize>) -> [u8; 32] {
    let mut k = [0u8; 32];
    k.copy_from_slice(&buf[r]);
    k
}

/// A checked view of a handshake initiation (exactly [`field::INIT_LEN`]
/// bytes; the type byte is the dispatcher's business, [`MessageType::of`]).
#[derive(Debug)]
pub struct InitiationPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> InitiationPacket<T> {
    /// Checks the length; `None` if it is not an initiation's.
    pub fn new_checked(buffer: T) -> Option<Self> {
        (buffer.as_ref().len() == field::INIT_LEN).then_some(InitiationPacket { buffer })
    }

    /// The initiator's session index.
    pub fn sender(&self) -> u32 {
        u32_at(self.buffer.as_ref(), field::INIT_SENDER)
    }

    /// The key hint.
    pub fn hint(&self) -> [u8; HINT_LEN] {
        let mut h = [0u8; HINT_LEN];
        h.copy_from_slice(&self.buffer.as_ref()[field::INIT_HINT]);
        h
    }

    /// The initiator's ephemeral public key.
    pub fn ephemeral(&self) -> [u8; 32] {
        key_at(self.buffer.as_ref(), field::INIT_EPHEMERAL)
    }

    /// The encrypted payload and its tag.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::INIT_PAYLOAD]
    }

    /// The bytes the first MAC covers.
    pub fn mac1_input(&self) -> &[u8] {
        &self.buffer.as_ref()[..field::INIT_MAC1.start]
    }

    /// The first MAC (pre-shared key and responder name).
    pub fn mac1(&self) -> &[u8] {
        &self.buffer.as_ref()[field::INIT_MAC1]
    }

    /// The bytes the second MAC covers.
    pub fn mac2_input(&self) -> &[u8] {
        &self.buffer.as_ref()[..field::INIT_MAC2.start]
    }

    /// The second MAC (the responder's cookie), zero without one.
    pub fn mac2(&self) -> &[u8] {
        &self.buffer.as_ref()[field::INIT_MAC2]
    }
}

/// A checked view of a handshake response (exactly [`field::RESP_LEN`]
/// bytes; the type byte is the dispatcher's business, [`MessageType::of`]).
#[derive(Debug)]
pub struct ResponsePacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ResponsePacket<T> {
    /// Checks the length; `None` if it is not a response's.
    pub fn new_checked(buffer: T) -> Option<Self> {
        (buffer.as_ref().len() == field::RESP_LEN).then_some(ResponsePacket { buffer })
    }

    /// The responder's session index.
    pub fn sender(&self) -> u32 {
        u32_at(self.buffer.as_ref(), field::RESP_SENDER)
    }

    /// The initiation's sender index this answers.
    pub fn receiver(&self) -> u32 {
        u32_at(self.buffer.as_ref(), field::RESP_RECEIVER)
    }

    /// The responder's ephemeral public key.
    pub fn ephemeral(&self) -> [u8; 32] {
        key_at(self.buffer.as_ref(), field::RESP_EPHEMERAL)
    }

    /// The encrypted payload and its tag.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::RESP_PAYLOAD]
    }

    /// The bytes the MAC covers.
    pub fn mac_input(&self) -> &[u8] {
        &self.buffer.as_ref()[..field::RESP_MAC.start]
    }

    /// The MAC.
    pub fn mac(&self) -> &[u8] {
        &self.buffer.as_ref()[field::RESP_MAC]
    }
}

/// A checked view of a cookie reply (exactly [`field::COOKIE_LEN`] bytes).
#[derive(Debug)]
pub struct CookieReplyPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> CookieReplyPacket<T> {
    /// Checks the length; `None` if it is not a cookie reply's.
    pub fn new_checked(buffer: T) -> Option<Self> {
        (buffer.as_ref().len() == field::COOKIE_LEN).then_some(CookieReplyPacket { buffer })
    }

    /// The initiation's sender index this answers.
    pub fn receiver(&self) -> u32 {
        u32_at(self.buffer.as_ref(), field::COOKIE_RECEIVER)
    }

    /// The nonce the cookie was sealed with.
    pub fn nonce(&self) -> [u8; 12] {
        let mut n = [0u8; 12];
        n.copy_from_slice(&self.buffer.as_ref()[field::COOKIE_NONCE]);
        n
    }

    /// The sealed cookie and its tag.
    pub fn sealed(&self) -> &[u8] {
        &self.buffer.as_ref()[field::COOKIE_SEALED]
    }
}

/// A checked view of a data or fragment message.
#[derive(Debug)]
pub struct DataPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> DataPacket<T> {
    /// Checks that the buffer holds a header and a tag.
    pub fn new_checked(buffer: T) -> Option<Self> {
        (buffer.as_ref().len() >= field::DATA_HEADER_LEN + TAG_LEN).then_some(DataPacket { buffer })
    }

    /// The receiver's session index.
    pub fn receiver(&self) -> u32 {
        u32_at(self.buffer.as_ref(), field::DATA_RECEIVER)
    }

    /// The packet counter.
    pub fn counter(&self) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.buffer.as_ref()[field::DATA_COUNTER]);
        u64::from_le_bytes(b)
    }
}

/// Writes the head of an initiation into `buf[..16]`: type, version,
/// reserved, sender index and key hint.
pub fn emit_initiation_head(buf: &mut [u8], sender: u32, hint: &[u8; HINT_LEN]) {
    buf[..4].copy_from_slice(&MessageType::Initiation.head());
    buf[field::INIT_SENDER].copy_from_slice(&sender.to_le_bytes());
    buf[field::INIT_HINT].copy_from_slice(hint);
}

/// Writes a data/fragment header into `buf[..16]`.
pub fn emit_data_header(buf: &mut [u8], ty: MessageType, receiver: u32, counter: u64) {
    buf[..4].copy_from_slice(&ty.head());
    buf[field::DATA_RECEIVER].copy_from_slice(&receiver.to_le_bytes());
    buf[field::DATA_COUNTER].copy_from_slice(&counter.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_header_fixture() {
        let mut buf = [0u8; 32];
        emit_data_header(
            &mut buf,
            MessageType::Data,
            0x0403_0201,
            0x0102_0304_0506_0708,
        );
        assert_eq!(
            &buf[..16],
            &[4, 3, 0, 0, 1, 2, 3, 4, 8, 7, 6, 5, 4, 3, 2, 1][..]
        );
        let p = DataPacket::new_checked(&buf[..]).expect("32 bytes");
        assert_eq!(p.receiver(), 0x0403_0201);
        assert_eq!(p.counter(), 0x0102_0304_0506_0708);
        assert_eq!(MessageType::of(&buf), Some(MessageType::Data));
        assert!(DataPacket::new_checked(&buf[..31]).is_none());
    }

    #[test]
    fn probe_body_round_trip() {
        let mut b = [0xffu8; 20];
        probe::emit(&mut b, probe::ACK, 0x0102_0304, 1400);
        assert_eq!(&b[..7], &[1, 4, 3, 2, 1, 0x78, 0x05]);
        assert!(b[7..].iter().all(|&x| x == 0), "padding is zero");
        assert_eq!(probe::parse(&b), Some((probe::ACK, 0x0102_0304, 1400)));
        assert_eq!(probe::parse(&b[..6]), None, "short");
        b[0] = 2;
        assert_eq!(probe::parse(&b), None, "unknown kind");
    }

    #[test]
    fn type_version_and_reserved() {
        assert_eq!(
            MessageType::of(&[1, 3, 0, 0]),
            Some(MessageType::Initiation)
        );
        assert_eq!(MessageType::of(&[2, 3, 0, 0]), Some(MessageType::Response));
        assert_eq!(
            MessageType::of(&[3, 3, 0, 0]),
            Some(MessageType::CookieReply)
        );
        assert_eq!(MessageType::of(&[5, 3, 0, 0]), Some(MessageType::Fragment));
        assert_eq!(MessageType::of(&[6, 3, 0, 0]), Some(MessageType::Probe));
        assert_eq!(MessageType::of(&[7, 3, 0, 0]), None);
        assert_eq!(MessageType::of(&[4, 3, 1, 0]), None, "reserved");
        assert_eq!(MessageType::of(&[4, 3, 0]), None, "short");
        // Versions 1 and 2 (byte 1 zero or two) and unknown ones are not ours.
        assert_eq!(MessageType::of(&[1, 0, 0, 0]), None);
        assert_eq!(MessageType::of(&[1, 2, 0, 0]), None);
        assert_eq!(MessageType::of(&[4, 4, 0, 0]), None);
        for t in [
            MessageType::Initiation,
            MessageType::Response,
            MessageType::CookieReply,
            MessageType::Data,
            MessageType::Fragment,
            MessageType::Probe,
        ] {
            assert_eq!(MessageType::of(&t.head()), Some(t));
        }
        let mut v1 = [0u8; 124];
        v1[0] = 1;
        assert_eq!(old_initiation_version(&v1), Some(1));
        assert_eq!(old_initiation_version(&v1[..123]), None);
        v1[1] = 2;
        assert_eq!(old_initiation_version(&v1), None);
        let mut v2 = [0u8; 140];
        v2[..2].copy_from_slice(&[1, 2]);
        assert_eq!(old_initiation_version(&v2), Some(2));
        assert_eq!(old_initiation_version(&v2[..139]), None);
        v2[1] = 3;
        assert_eq!(old_initiation_version(&v2), None);
        assert_eq!(old_initiation_version(&[1, 0]), None);
        assert_eq!(old_initiation_version(&[0u8; field::INIT_LEN]), None);
    }

    /// The head of a version-3 initiation, byte by byte.
    #[test]
    fn initiation_head_emit_fixture() {
        let mut buf = [0xffu8; field::INIT_LEN];
        emit_initiation_head(
            &mut buf,
            0x1234_5678,
            &[0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7],
        );
        assert_eq!(
            &buf[..16],
            &[
                1, 3, 0, 0, 0x78, 0x56, 0x34, 0x12, 0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7
            ][..]
        );
        assert!(buf[16..].iter().all(|&b| b == 0xff), "the rest untouched");
        assert_eq!(MessageType::of(&buf), Some(MessageType::Initiation));
        let p = InitiationPacket::new_checked(&buf[..]).expect("148 bytes");
        assert_eq!(p.sender(), 0x1234_5678);
        assert_eq!(p.hint(), [0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7]);
    }

    #[test]
    fn handshake_views_fixture() {
        let mut init = [0u8; field::INIT_LEN];
        init[..4].copy_from_slice(&[1, 3, 0, 0]);
        init[4..8].copy_from_slice(&[0x78, 0x56, 0x34, 0x12]);
        init[8..16].copy_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        init[16..48].fill(0xee);
        init[48..116].fill(0xcc);
        init[116..132].fill(0xaa);
        init[132..].fill(0xbb);
        assert_eq!(MessageType::of(&init), Some(MessageType::Initiation));
        let p = InitiationPacket::new_checked(&init[..]).expect("148 bytes");
        assert_eq!(p.sender(), 0x1234_5678);
        assert_eq!(p.hint(), [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(p.ephemeral(), [0xee; 32]);
        assert_eq!(p.payload(), &[0xcc; 68][..]);
        assert_eq!(p.mac1_input(), &init[..116]);
        assert_eq!(p.mac1(), &[0xaa; 16][..]);
        assert_eq!(p.mac2_input(), &init[..132]);
        assert_eq!(p.mac2(), &[0xbb; 16][..]);
        assert!(InitiationPacket::new_checked(&init[..147]).is_none());
        assert!(
            InitiationPacket::new_checked(&init[..140]).is_none(),
            "v2 size"
        );
        assert!(InitiationPacket::new_checked(&[&init[..], &[0]].concat()).is_none());

        let mut resp = [0u8; field::RESP_LEN];
        resp[..4].copy_from_slice(&MessageType::Response.head());
        resp[4..8].copy_from_slice(&7u32.to_le_bytes());
        resp[8..12].copy_from_slice(&9u32.to_le_bytes());
        resp[12..44].fill(0x11);
        resp[44..72].fill(0x22);
        resp[72..].fill(0x33);
        let r = ResponsePacket::new_checked(&resp[..]).expect("88 bytes");
        assert_eq!((r.sender(), r.receiver()), (7, 9));
        assert_eq!(r.ephemeral(), [0x11; 32]);
        assert_eq!(r.payload(), &[0x22; 28][..]);
        assert_eq!(r.mac_input(), &resp[..72]);
        assert_eq!(r.mac(), &[0x33; 16][..]);
        assert!(ResponsePacket::new_checked(&resp[..87]).is_none());

        let mut cookie = [0u8; field::COOKIE_LEN];
        cookie[..4].copy_from_slice(&MessageType::CookieReply.head());
        cookie[4..8].copy_from_slice(&5u32.to_le_bytes());
        cookie[8..20].fill(0x44);
        cookie[20..].fill(0x55);
        let c = CookieReplyPacket::new_checked(&cookie[..]).expect("52 bytes");
        assert_eq!(c.receiver(), 5);
        assert_eq!(c.nonce(), [0x44; 12]);
        assert_eq!(c.sealed(), &[0x55; 32][..]);
        assert!(CookieReplyPacket::new_checked(&cookie[..51]).is_none());
    }

    #[test]
    fn layouts_are_contiguous() {
        assert_eq!(field::INIT_PAYLOAD.len(), init_payload::LEN + TAG_LEN);
        assert_eq!(field::INIT_MAC1.len(), MAC_LEN);
        assert_eq!(field::INIT_MAC2.len(), MAC_LEN);
        assert_eq!(field::RESP_MAC.len(), MAC_LEN);
        assert_eq!(field::INIT_MAC1.end, field::INIT_MAC2.start);
        assert_eq!(field::INIT_MAC2.end, field::INIT_LEN);
        assert_eq!(field::RESP_MAC.end, field::RESP_LEN);
        assert_eq!(field::COOKIE_SEALED.len(), 16 + TAG_LEN);
        assert_eq!(field::COOKIE_SEALED.end, field::COOKIE_LEN);
        assert_eq!(field::INIT_SENDER.end, field::INIT_HINT.start);
        assert_eq!(field::INIT_HINT.len(), HINT_LEN);
        assert_eq!(field::INIT_HINT.end, field::INIT_EPHEMERAL.start);
        assert_eq!(field::INIT_EPHEMERAL.end, field::INIT_PAYLOAD.start);
        assert_eq!(field::INIT_PAYLOAD.end, field::INIT_MAC1.start);
        assert_eq!(field::RESP_EPHEMERAL.end, field::RESP_PAYLOAD.start);
    }
}
