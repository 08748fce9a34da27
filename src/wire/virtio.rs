//! The Linux `virtio_net_hdr` that precedes every frame on a TAP opened with
//! `IFF_VNET_HDR`, and the checksum fix-up it can ask for.
//!
//! ```text
//! 0       1          2         4          6            8             10
//! +-------+----------+---------+----------+------------+-------------+
//! | flags | gso_type | hdr_len | gso_size | csum_start | csum_offset |
//! | u8    | u8       | u16     | u16      | u16        | u16         |
//! +-------+----------+---------+----------+------------+-------------+
//! ```
//! The 16-bit fields are in the host's byte order (a legacy virtio header;
//! the TAP is not switched with `TUNSETVNETLE`), which is little-endian on
//! every target this appliance is built for.
//! `csum_start` counts from the start of the Ethernet frame, which follows
//! the header. Once [`VirtioNetHdr::new_checked`] succeeded no accessor panics.

/// Length of the header (`struct virtio_net_hdr`, without `num_buffers`).
pub const HDR_LEN: usize = 10;

/// `flags`: the checksum from `csum_start` to the end is left to "hardware"
/// (to us, or to the receiving kernel), to be stored at
/// `csum_start + csum_offset`.
pub const F_NEEDS_CSUM: u8 = 1;
/// `flags`: the checksum was already verified (by the sending site's kernel).
pub const F_DATA_VALID: u8 = 2;
/// `gso_type`: not a segmentation batch.
pub const GSO_NONE: u8 = 0;
/// `gso_type`: a TCP/IPv4 batch to be segmented in `gso_size` pieces.
pub const GSO_TCPV4: u8 = 1;
/// `gso_type`: a UDP (fragmentation offload) batch.
pub const GSO_UDP: u8 = 3;
/// `gso_type`: a TCP/IPv6 batch.
pub const GSO_TCPV6: u8 = 4;
/// `gso_type` flag: the batch carries ECN CWR.
pub const GSO_ECN: u8 = 0x80;
/// The smallest segment size accepted in a batch from a peer: the TCP MSS
/// every IPv4 host must accept (RFC 879). A smaller one would turn one
/// 64 KiB batch into thousands of segments in the receiving kernel.
pub const MIN_GSO_SIZE: u16 = 536;

/// A checked view of a virtio-net header at the start of a buffer.
#[derive(Debug)]
pub struct VirtioNetHdr<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VirtioNetHdr<T> {
    /// Checks that the buffer holds at least a header.
    pub fn new_checked(buffer: T) -> Option<Self> {
        (buffer.as_ref().len() >= HDR_LEN).then_some(VirtioNetHdr { buffer })
    }

    fn u16_at(&self, at: usize) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_le_bytes([b[at], b[at + 1]])
    }

    /// The flags byte.
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[0]
    }

    /// The segmentation type (`GSO_*`, possibly with [`GSO_ECN`]).
    pub fn gso_type(&self) -> u8 {
        self.buffer.as_ref()[1]
    }

    /// Length of the headers of the batch (a hint).
    pub fn hdr_len(&self) -> u16 {
        self.u16_at(2)
    }

    /// Payload bytes per segment of a batch.
    pub fn gso_size(&self) -> u16 {
        self.u16_at(4)
    }

    /// Where checksumming starts, from the start of the Ethernet frame.
    pub fn csum_start(&self) -> u16 {
        self.u16_at(6)
    }

    /// Where the checksum goes, from `csum_start`.
    pub fn csum_offset(&self) -> u16 {
        self.u16_at(8)
    }

    /// Whether this header, followed by a frame of `frame_len` bytes, is one
    /// a TAP could have produced on the sending site, and so is safe to hand
    /// to the local kernel: no flag but [`F_NEEDS_CSUM`] ([`F_DATA_VALID`]
    /// would make our kernel skip checking a checksum the peer vouches for,
    /// and a TAP never sets it on a read); no segmentation, or TCP over
    /// IPv4/IPv6 (ECN allowed) with a checksum request, a segment size of at
    /// least [`MIN_GSO_SIZE`] and a TCP header inside the frame; a checksum
    /// field that lies inside the frame.
    pub fn is_sane(&self, frame_len: usize) -> bool {
        if self.flags() & !F_NEEDS_CSUM != 0 {
            return false;
        }
        let needs_csum = self.flags() & F_NEEDS_CSUM != 0;
        match self.gso_type() & !GSO_ECN {
            GSO_NONE if self.gso_type() & GSO_ECN == 0 => {}
            GSO_TCPV4 | GSO_TCPV6
                if self.gso_size() >= MIN_GSO_SIZE
                    && needs_csum
                    && usize::from(self.csum_start()) + 20 <= frame_len => {}
            _ => return false,
        }
        !needs_csum
            || usize::from(self.csum_start()) + usize::from(self.csum_offset()) + 2 <= frame_len
    }
}

/// What a packet (this header, then the frame) puts on the wire once the
/// receiving kernel has segmented it: `(frames, bytes)`. A frame without
/// segmentation is one frame of its own length; a TCP batch is one frame
/// per `gso_size` bytes of payload, each carrying the batch's headers
/// (Ethernet, IP and TCP: up to `csum_start`, where TCP begins, plus TCP's
/// own header length; `hdr_len` is only a hint). A batch whose numbers do
/// not add up counts as one frame.
pub fn carried(packet: &[u8]) -> (u64, u64) {
    let Some(h) = VirtioNetHdr::new_checked(packet) else {
        return (1, packet.len() as u64);
    };
    let frame = &packet[HDR_LEN..];
    let one = (1, frame.len() as u64);
    let gso = usize::from(h.gso_size());
    if !matches!(h.gso_type() & !GSO_ECN, GSO_TCPV4 | GSO_TCPV6) || gso == 0 {
        return one;
    }
    let tcp = usize::from(h.csum_start());
    let Some(&data_offset) = frame.get(tcp + 12) else {
        return one;
    };
    let headers = tcp + usize::from(data_offset >> 4) * 4;
    match frame.len().checked_sub(headers) {
        Some(payload) if payload > 0 => {
            let n = payload.div_ceil(gso);
            (n as u64, (payload + n * headers) as u64)
        }
        _ => one,
    }
}

/// Completes a checksum the kernel left partial ([`F_NEEDS_CSUM`]): the ones'
/// complement sum from `csum_start` to the end goes into the field at
/// `csum_start + csum_offset` (which holds the pseudo-header sum). `packet`
/// starts with the header. Malformed offsets are ignored.
pub fn finish_checksum(packet: &mut [u8]) {
    let Some(h) = VirtioNetHdr::new_checked(&*packet) else {
        return;
    };
    if h.flags() & F_NEEDS_CSUM == 0 {
        return;
    }
    let start = HDR_LEN + usize::from(h.csum_start());
    let field = start + usize::from(h.csum_offset());
    if field + 2 > packet.len() {
        return;
    }
    let mut sum: u32 = 0;
    for chunk in packet[start..].chunks(2) {
        let word = if chunk.len() == 2 {
            u16::from_be_bytes([chunk[0], chunk[1]])
        } else {
            u16::from_be_bytes([chunk[0], 0])
        };
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let mut csum = !(sum as u16);
    if csum == 0 {
        csum = 0xffff; // UDP: zero means "no checksum"
    }
    packet[field..field + 2].copy_from_slice(&csum.to_be_bytes());
    packet[0] &= !F_NEEDS_CSUM;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_fields_fixture() {
        // A TCP/IPv4 TSO batch as the kernel hands it over: needs checksum,
        // 54 bytes of headers, 1448-byte segments, checksum at 34 + 16.
        let b = [1u8, 1, 54, 0, 0xa8, 0x05, 34, 0, 16, 0, 0xff];
        let h = VirtioNetHdr::new_checked(&b[..]).expect("10 bytes");
        assert_eq!(h.flags(), F_NEEDS_CSUM);
        assert_eq!(h.gso_type(), GSO_TCPV4);
        assert_eq!(h.hdr_len(), 54);
        assert_eq!(h.gso_size(), 1448);
        assert_eq!((h.csum_start(), h.csum_offset()), (34, 16));
        assert!(VirtioNetHdr::new_checked(&b[..9]).is_none());
    }

    #[test]
    fn a_batch_carries_one_frame_per_segment() {
        // 14 + 20 + 20 bytes of headers; the kernel's hdr_len hint is ignored.
        let packet = |hdr: [u8; 10], payload: usize| {
            let mut p = hdr.to_vec();
            let mut f = vec![0u8; 54 + payload];
            f[34 + 12] = 5 << 4;
            p.append(&mut f);
            p
        };
        let tso = [1, 1, 0, 0, 0xa8, 0x05, 34, 0, 16, 0];
        // 45 segments: 44 full and one of 72 bytes, each with 54 of headers.
        assert_eq!(carried(&packet(tso, 63_784)), (45, 63_784 + 45 * 54));
        assert_eq!(carried(&packet(tso, 1448)), (1, 1448 + 54));
        let ecn_v6 = [1, 0x84, 0, 0, 0xa8, 0x05, 34, 0, 16, 0];
        assert_eq!(carried(&packet(ecn_v6, 2897)), (3, 2897 + 3 * 54));
        // One frame of its own length (header left out) whenever it does
        // not add up: no segmentation, no payload, a zero segment size,
        // TCP beyond the frame, a packet shorter than the header.
        assert_eq!(carried(&packet([0; 10], 100)), (1, 154));
        assert_eq!(carried(&packet(tso, 0)), (1, 54));
        let zero = [1, 1, 0, 0, 0, 0, 34, 0, 16, 0];
        assert_eq!(carried(&packet(zero, 5000)), (1, 5054));
        let far = [1, 1, 0, 0, 0xa8, 0x05, 0xff, 0xff, 16, 0];
        assert_eq!(carried(&packet(far, 5000)), (1, 5054));
        assert_eq!(carried(&[0; 7]), (1, 7));
        let udp = [1, 3, 0, 0, 0xa8, 0x05, 34, 0, 6, 0];
        assert_eq!(
            carried(&packet(udp, 5000)),
            (1, 5054),
            "UFO is never accepted"
        );
    }

    #[test]
    fn sanity_of_headers_from_a_peer() {
        let hdr = |b: [u8; 10]| b;
        let ok = |b: [u8; 10], len: usize| {
            VirtioNetHdr::new_checked(&b[..])
                .expect("10 bytes")
                .is_sane(len)
        };
        // Plain frame; checksum-offloaded UDP; a TSO batch; with ECN.
        assert!(ok([0; 10], 60));
        assert!(ok(hdr([1, 0, 0, 0, 0, 0, 34, 0, 6, 0]), 60));
        assert!(ok(hdr([1, 1, 54, 0, 0xa8, 5, 34, 0, 16, 0]), 65_000));
        assert!(ok(hdr([1, 0x84, 74, 0, 0x94, 5, 54, 0, 16, 0]), 65_000));
        assert!(!ok(hdr([2, 0, 0, 0, 0, 0, 0, 0, 0, 0]), 60), "data valid");
        assert!(!ok(hdr([3, 0, 0, 0, 0, 0, 34, 0, 6, 0]), 60), "data valid");
        // Segments smaller than 536 bytes (1 would make 64 k of them); a
        // batch whose TCP header is not inside the frame.
        assert!(!ok(hdr([1, 1, 54, 0, 1, 0, 34, 0, 16, 0]), 65_000));
        assert!(!ok(hdr([1, 1, 54, 0, 0x17, 2, 34, 0, 16, 0]), 65_000));
        assert!(ok(hdr([1, 1, 54, 0, 0x18, 2, 34, 0, 16, 0]), 65_000));
        assert!(!ok(hdr([1, 1, 54, 0, 0xa8, 5, 0xf0, 0, 16, 0]), 250));
        // Unknown flag; UDP/unknown GSO; ECN without GSO; TSO without a
        // segment size or without a checksum request; checksum field past
        // the end of the frame.
        assert!(!ok(hdr([4, 0, 0, 0, 0, 0, 0, 0, 0, 0]), 60));
        assert!(!ok(hdr([1, 3, 42, 0, 0xc8, 5, 34, 0, 6, 0]), 9000));
        assert!(!ok(hdr([1, 5, 42, 0, 0xc8, 5, 34, 0, 6, 0]), 9000));
        assert!(!ok(hdr([0, 0x80, 0, 0, 0, 0, 0, 0, 0, 0]), 60));
        assert!(!ok(hdr([1, 1, 54, 0, 0, 0, 34, 0, 16, 0]), 65_000));
        assert!(!ok(hdr([0, 1, 54, 0, 0xa8, 5, 0, 0, 0, 0]), 65_000));
        assert!(!ok(hdr([1, 0, 0, 0, 0, 0, 34, 0, 24, 0]), 59));
        assert!(ok(hdr([1, 0, 0, 0, 0, 0, 34, 0, 24, 0]), 60));
        assert!(!ok(hdr([1, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]), 60));
    }

    /// A UDP/IPv4 frame with a correct checksum, turned into what the kernel
    /// hands over with checksum offload, comes back identical.
    #[test]
    fn finishes_a_partial_udp_checksum() {
        let mut frame = vec![0u8; 14 + 20 + 8 + 4];
        frame[12..14].copy_from_slice(&[0x08, 0x00]);
        let ip = &mut frame[14..34];
        ip[0] = 0x45;
        ip[9] = 17;
        ip[12..16].copy_from_slice(&[198, 19, 0, 5]);
        ip[16..20].copy_from_slice(&[198, 19, 0, 254]);
        let udp = 34;
        frame[udp..udp + 2].copy_from_slice(&68u16.to_be_bytes());
        frame[udp + 2..udp + 4].copy_from_slice(&67u16.to_be_bytes());
        frame[udp + 4..udp + 6].copy_from_slice(&12u16.to_be_bytes());
        frame[udp + 8..].copy_from_slice(&[1, 2, 3, 4]);
        // Pseudo-header sum: src + dst + proto + UDP length.
        let words = [0xc613u32, 0x0005, 0xc613, 0x00fe, 17, 12];
        let mut pseudo: u32 = words.iter().sum();
        while pseudo > 0xffff {
            pseudo = (pseudo & 0xffff) + (pseudo >> 16);
        }
        let mut packet = vec![0u8; HDR_LEN];
        packet[0] = F_NEEDS_CSUM;
        packet[6..8].copy_from_slice(&(udp as u16).to_le_bytes());
        packet[8..10].copy_from_slice(&6u16.to_le_bytes());
        packet.extend_from_slice(&frame);
        packet[HDR_LEN + udp + 6..HDR_LEN + udp + 8]
            .copy_from_slice(&(pseudo as u16).to_be_bytes());
        finish_checksum(&mut packet);
        // Verify: the sum over pseudo-header and UDP segment is 0xffff.
        let seg = &packet[HDR_LEN + udp..];
        let mut sum: u32 = words.iter().sum();
        for c in seg.chunks(2) {
            sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        assert_eq!(sum, 0xffff);
        assert_eq!(packet[0] & F_NEEDS_CSUM, 0);
        // Garbage offsets do nothing.
        let mut junk = vec![1u8; 12];
        junk[6] = 0xff;
        finish_checksum(&mut junk);
        assert_eq!(junk[10..], [1, 1]);
    }
}
