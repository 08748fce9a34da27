//! Cryptographic primitives of the tunnel: the Noise symmetric state
//! (SHA-256, HKDF, AES-256-GCM) and the per-direction transport keys.
//!
//! Everything secret here is zeroized when dropped. Tag checks are done by
//! `aes-gcm` (constant time); the handshake MAC is compared with `subtle`.

use aes_gcm::aead::inout::InOutBuf;
use aes_gcm::{AeadInOut, Aes256Gcm, KeyInit, Nonce, Tag};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// The Noise protocol name; exactly 32 bytes, so it is used as `h` unhashed.
pub(crate) const PROTOCOL_NAME: &[u8; 32] = b"Noise_NNpsk0_25519_AESGCM_SHA256";
/// Bound into every handshake, followed by the intended responder's name,
/// so keys never collide with another protocol's or another site's.
pub(crate) const PROLOGUE: &[u8] = b"tapbridge tunnel v3";
pub use crate::wire::tunnel::{HINT_LEN, MAC_LEN, TAG_LEN};

type HmacSha256 = Hmac<Sha256>;

/// SHA-256 over the concatenation of `parts`.
pub(crate) fn hash(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// Noise's `HKDF(ck, ikm, n)`: RFC 5869 extract with `ck` as salt, expand with
/// empty info. Returns the first `N` 32-byte outputs.
pub(crate) fn hkdf<const N: usize>(ck: &[u8; 32], ikm: &[u8]) -> [[u8; 32]; N] {
    let mut okm = [0u8; 96];
    let len = 32 * N;
    Hkdf::<Sha256>::new(Some(ck), ikm)
        .expand(&[], &mut okm[..len])
        .expect("at most 3 * 32 bytes, far below HKDF's 255 * 32 limit");
    let mut out = [[0u8; 32]; N];
    for (i, o) in out.iter_mut().enumerate() {
        o.copy_from_slice(&okm[32 * i..32 * (i + 1)]);
    }
    okm.zeroize();
    out
}

/// Noise nonce for AESGCM: 32 zero bits then the 64-bit counter, big-endian.
pub(crate) fn nonce(counter: u64) -> Nonce<aes_gcm::aead::consts::U12> {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_be_bytes());
    n.into()
}

/// A site name as it enters hashes: one length byte, then the bytes.
fn name_parts(name: &[u8]) -> [&[u8]; 2] {
    const LENS: [u8; 256] = {
        let mut l = [0u8; 256];
        let mut i = 0;
        while i < 256 {
            l[i] = i as u8;
            i += 1;
        }
        l
    };
    let name = &name[..name.len().min(255)];
    [std::slice::from_ref(&LENS[name.len()]), name]
}

/// A keyed MAC used to drop garbage handshake messages before any DH work.
/// The key is derived from the PSK and the name of the site the message is
/// meant for, so a message meant for one site fails the check at any other;
/// the comparison is constant time.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub(crate) struct MacKey([u8; 32]);

impl MacKey {
    /// The key of handshake messages sent to the site called `receiver`.
    pub(crate) fn new(psk: &[u8; 32], receiver: &[u8]) -> Self {
        let [len, name] = name_parts(receiver);
        MacKey(hash(&[b"tapbridge mac1 v3", psk, len, name]))
    }

    pub(crate) fn compute(&self, msg: &[u8]) -> [u8; MAC_LEN] {
        mac16(&self.0, &[msg])
    }

    pub(crate) fn verify(&self, msg: &[u8], tag: &[u8]) -> bool {
        self.compute(msg).ct_eq(tag).into()
    }
}

/// The key hint of initiations to the site called `responder` under `psk`:
/// `HASH("tapbridge hint v3" || psk || N(responder))[..8]`. It lets the
/// responder find the key of an initiation in one table lookup; it
/// authenticates nothing (the first MAC and the handshake do), and without
/// the key it tells an observer nothing but that two initiations use the
/// same key.
pub(crate) fn key_hint(psk: &[u8; 32], responder: &[u8]) -> [u8; HINT_LEN] {
    let [len, name] = name_parts(responder);
    let h = hash(&[b"tapbridge hint v3", psk, len, name]);
    let mut out = [0u8; HINT_LEN];
    out.copy_from_slice(&h[..HINT_LEN]);
    out
}

/// HMAC-SHA256 over the concatenation of `parts`, truncated to 16 bytes.
pub(crate) fn mac16(key: &[u8], parts: &[&[u8]]) -> [u8; MAC_LEN] {
    let mut mac =
        <HmacSha256 as hmac::KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        mac.update(p);
    }
    let full = mac.finalize().into_bytes();
    let mut out = [0u8; MAC_LEN];
    out.copy_from_slice(&full[..MAC_LEN]);
    out
}

/// The responder's secret for cookies: a cookie is a MAC of the source
/// address under it, so only who receives at that address can present it.
/// Replaced every two minutes by the tunnel.
#[derive(Zeroize, ZeroizeOnDrop)]
pub(crate) struct CookieSecret([u8; 32]);

impl CookieSecret {
    pub(crate) fn new(bytes: [u8; 32]) -> Self {
        CookieSecret(bytes)
    }

    /// The cookie for a source address.
    pub(crate) fn cookie(&self, from: std::net::SocketAddr) -> [u8; MAC_LEN] {
        let ip = match from.ip().to_canonical() {
            std::net::IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
            std::net::IpAddr::V6(a) => a.octets(),
        };
        mac16(&self.0, &[&ip, &from.port().to_le_bytes()])
    }
}

/// Seals and opens cookie replies. The key comes from the PSK and the
/// responder's name, so only the initiator that holds that PSK (and meant
/// that responder) can read the cookie.
pub(crate) struct CookieKey(Aes256Gcm);

impl CookieKey {
    pub(crate) fn new(psk: &[u8; 32], responder: &[u8]) -> Self {
        let [len, name] = name_parts(responder);
        let mut k = hash(&[b"tapbridge cookie v3", psk, len, name]);
        let key = CookieKey(Aes256Gcm::new((&k).into()));
        k.zeroize();
        key
    }

    /// Encrypts `cookie` with the given (random) nonce; `ad` is the first MAC
    /// of the initiation being answered. Returns ciphertext and tag.
    pub(crate) fn seal(&self, nonce: &[u8; 12], ad: &[u8], cookie: &[u8; MAC_LEN]) -> [u8; 32] {
        let mut out = [0u8; 32];
        out[..MAC_LEN].copy_from_slice(cookie);
        let tag = self
            .0
            .encrypt_inout_detached(&(*nonce).into(), ad, InOutBuf::from(&mut out[..MAC_LEN]))
            .expect("16 bytes");
        out[MAC_LEN..].copy_from_slice(&tag);
        out
    }

    /// Inverse of [`seal`](Self::seal); `None` if the tag does not verify.
    pub(crate) fn open(&self, nonce: &[u8; 12], ad: &[u8], sealed: &[u8]) -> Option<[u8; MAC_LEN]> {
        if sealed.len() != MAC_LEN + TAG_LEN {
            return None;
        }
        let mut cookie = [0u8; MAC_LEN];
        cookie.copy_from_slice(&sealed[..MAC_LEN]);
        let tag = Tag::try_from(&sealed[MAC_LEN..]).ok()?;
        self.0
            .decrypt_inout_detached(&(*nonce).into(), ad, InOutBuf::from(&mut cookie[..]), &tag)
            .ok()?;
        Some(cookie)
    }
}

/// Noise `SymmetricState` (with its `CipherState` folded in).
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub(crate) struct SymmetricState {
    ck: [u8; 32],
    h: [u8; 32],
    k: [u8; 32],
    n: u64,
}

impl SymmetricState {
    /// `Initialize` + `MixHash(prologue || len || responder)` + the `psk`
    /// token of `psk0`. The result is the same for every handshake under one
    /// PSK towards one responder, so callers compute it once and clone it.
    pub(crate) fn initial(psk: &[u8; 32], responder: &[u8]) -> Self {
        let mut s = SymmetricState {
            ck: *PROTOCOL_NAME,
            h: *PROTOCOL_NAME,
            k: [0; 32],
            n: 0,
        };
        let [len, name] = name_parts(responder);
        s.h = hash(&[&s.h, PROLOGUE, len, name]);
        s.mix_key_and_hash(psk);
        s
    }

    pub(crate) fn mix_hash(&mut self, data: &[u8]) {
        self.h = hash(&[&self.h, data]);
    }

    pub(crate) fn mix_key(&mut self, ikm: &[u8]) {
        let [ck, k] = hkdf::<2>(&self.ck, ikm);
        self.ck = ck;
        self.k = k;
        self.n = 0;
    }

    pub(crate) fn mix_key_and_hash(&mut self, ikm: &[u8]) {
        let [ck, th, k] = hkdf::<3>(&self.ck, ikm);
        self.ck = ck;
        self.mix_hash(&th);
        self.k = k;
        self.n = 0;
    }

    /// Encrypts `buf[..len - TAG_LEN]` in place and writes the tag into the
    /// last `TAG_LEN` bytes, with `h` as associated data; then mixes the
    /// ciphertext into `h`.
    pub(crate) fn encrypt_and_hash(&mut self, buf: &mut [u8]) {
        let split = buf.len() - TAG_LEN;
        let cipher = Aes256Gcm::new((&self.k).into());
        let (pt, tag_out) = buf.split_at_mut(split);
        let tag = cipher
            .encrypt_inout_detached(&nonce(self.n), &self.h, InOutBuf::from(pt))
            .expect("handshake payloads are tiny");
        tag_out.copy_from_slice(&tag);
        self.n += 1;
        self.mix_hash(buf);
    }

    /// Inverse of [`encrypt_and_hash`](Self::encrypt_and_hash); `false` if the
    /// tag does not verify (the buffer content is then unspecified).
    pub(crate) fn decrypt_and_hash(&mut self, buf: &mut [u8]) -> bool {
        let new_h = hash(&[&self.h, buf]);
        let split = buf.len() - TAG_LEN;
        let cipher = Aes256Gcm::new((&self.k).into());
        let (ct, tag) = buf.split_at_mut(split);
        let tag = Tag::try_from(&*tag).expect("TAG_LEN bytes");
        if cipher
            .decrypt_inout_detached(&nonce(self.n), &self.h, InOutBuf::from(ct), &tag)
            .is_err()
        {
            return false;
        }
        self.n += 1;
        self.h = new_h;
        true
    }

    /// Noise `Split()`: the initiator's sending key first.
    pub(crate) fn split(&self) -> (TransportKey, TransportKey) {
        let [k1, k2] = hkdf::<2>(&self.ck, &[]);
        (TransportKey::new(&k1), TransportKey::new(&k2))
    }
}

/// One direction's AES-256-GCM key, for the data path: AWS-LC's
/// implementation through `aws-lc-rs` (runtime-dispatched AES-NI/VAES and
/// carry-less multiply, 2.6-3x the `aes-gcm` crate on 1400-byte frames here:
/// docs/design.md, "AES-GCM on the data path"). The expanded key lives in memory
/// AWS-LC allocated, which it overwrites when the key is dropped
/// (`EVP_AEAD_CTX_free` → `OPENSSL_free` cleanses the allocation); the tag
/// check is constant time.
pub struct TransportKey(aws_lc_rs::aead::LessSafeKey);

impl TransportKey {
    fn new(key: &[u8; 32]) -> Self {
        let mut k = *key;
        let unbound = aws_lc_rs::aead::UnboundKey::new(&aws_lc_rs::aead::AES_256_GCM, &k)
            .expect("a 32-byte key is a valid AES-256-GCM key");
        k.zeroize();
        TransportKey(aws_lc_rs::aead::LessSafeKey::new(unbound))
    }

    /// Seals `buf` in place with `aad`; returns the tag.
    pub(crate) fn seal(&self, counter: u64, aad: &[u8], buf: &mut [u8]) -> [u8; TAG_LEN] {
        let tag = self
            .0
            .seal_in_place_separate_tag(aws_nonce(counter), aws_lc_rs::aead::Aad::from(aad), buf)
            .expect("frames are far below AES-GCM's 64 GiB message limit");
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// Opens `sealed` (ciphertext then the tag) in place: on success the
    /// plaintext is its first `len - TAG_LEN` bytes. `false` if it is shorter
    /// than a tag or the tag does not verify.
    pub(crate) fn open(&self, counter: u64, aad: &[u8], sealed: &mut [u8]) -> bool {
        sealed.len() >= TAG_LEN
            && self
                .0
                .open_in_place(aws_nonce(counter), aws_lc_rs::aead::Aad::from(aad), sealed)
                .is_ok()
    }
}

/// The key one box of a high-availability pair seals its partner-channel
/// messages with (`crate::partner`): HKDF-SHA256 of the channel's
/// pre-shared key, salted with SHA-256 of a label of its own and the
/// sender's random boot id, so every boot of every box has a fresh key (its
/// counter starts at 0 again) and nothing is shared with the tunnel's keys.
pub(crate) fn partner_key(psk: &[u8; 32], boot: &[u8; 16]) -> TransportKey {
    let salt = hash(&[b"tapbridge partner channel v1", boot]);
    let [mut k] = hkdf::<1>(&salt, psk);
    let key = TransportKey::new(&k);
    k.zeroize();
    key
}

/// [`nonce`] for `aws-lc-rs`: the same 12 bytes.
fn aws_nonce(counter: u64) -> aws_lc_rs::aead::Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_be_bytes());
    aws_lc_rs::aead::Nonce::assume_unique_for_key(n)
}

impl std::fmt::Debug for TransportKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TransportKey(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("test hex"))
            .collect()
    }

    /// RFC 5869, test case 1 (SHA-256).
    #[test]
    fn hkdf_rfc5869_case1() {
        let ikm = hex("0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b");
        let salt = hex("000102030405060708090a0b0c");
        let info = hex("f0f1f2f3f4f5f6f7f8f9");
        let (prk, hk) = Hkdf::<Sha256>::extract(Some(&salt), &ikm);
        assert_eq!(
            prk.as_slice(),
            hex("077709362c2e32df0ddc3f0dc47bba63 90b6c73bb50f9c3122ec844ad7c2b3e5").as_slice()
        );
        let mut okm = [0u8; 42];
        hk.expand(&info, &mut okm).expect("42 bytes");
        assert_eq!(
            okm.as_slice(),
            hex("3cb25f25faacd57a90434f64d0362f2a 2d2d0a90cf1a5a4c5db02d56ecc4c5bf 34007208d5b887185865")
                .as_slice()
        );
    }

    /// RFC 5869, test case 3: empty salt and info; this is the shape of
    /// Noise's HKDF with an all-zero chaining key.
    #[test]
    fn hkdf_rfc5869_case3_matches_noise_hkdf() {
        let ikm = hex("0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b");
        let mut okm = [0u8; 42];
        Hkdf::<Sha256>::new(None, &ikm)
            .expand(&[], &mut okm)
            .expect("42 bytes");
        let expected = hex(
            "8da4e775a563c18f715f802a063c5a31 b8a11f5c5ee1879ec3454e5f3c738d2d 9d201395faa4b61a96c8",
        );
        assert_eq!(okm.as_slice(), expected.as_slice());
        // RFC 5869 with salt None uses a zero key of hash length: Noise's form.
        let [t1, _t2] = hkdf::<2>(&[0u8; 32], &ikm);
        assert_eq!(&t1[..], &expected[..32]);
    }

    /// AES-256-GCM known answer (McGrew & Viega GCM spec, test case 16:
    /// 256-bit key, 96-bit IV, 60-byte plaintext, 20-byte AAD).
    #[test]
    fn aes256gcm_known_answer() {
        let key = hex("feffe9928665731c6d6a8f9467308308 feffe9928665731c6d6a8f9467308308");
        let iv = hex("cafebabefacedbaddecaf888");
        let aad = hex("feedfacedeadbeeffeedfacedeadbeefabaddad2");
        let pt = hex(
            "d9313225f88406e5a55909c5aff5269a 86a7a9531534f7da2e4c303d8a318a72 \
             1c3c0c95956809532fcf0e2449a6b525 b16aedf5aa0de657ba637b39",
        );
        let ct = hex(
            "522dc1f099567d07f47f37a32a84427d 643a8cdcbfe5c0c97598a2bd2555d1aa \
             8cb08e48590dbb3da7b08b1056828838 c5f61e6393ba7a0abcc9f662",
        );
        let tag = hex("76fc6ece0f4e1768cddf8853bb2d551b");
        let key: [u8; 32] = key.try_into().expect("32");
        let cipher = Aes256Gcm::new((&key).into());
        let nonce = Nonce::<aes_gcm::aead::consts::U12>::try_from(iv.as_slice()).expect("12");
        let mut buf = pt.clone();
        let t = cipher
            .encrypt_inout_detached(&nonce, &aad, InOutBuf::from(buf.as_mut_slice()))
            .expect("seal");
        assert_eq!(buf, ct);
        assert_eq!(t.as_slice(), tag.as_slice());
        let t = Tag::try_from(tag.as_slice()).expect("16");
        cipher
            .decrypt_inout_detached(&nonce, &aad, InOutBuf::from(buf.as_mut_slice()), &t)
            .expect("open");
        assert_eq!(buf, pt);
    }

    #[test]
    fn transport_key_roundtrip_and_tamper() {
        let (a, _b) = SymmetricState::initial(&[7; 32], b"b").split();
        let mut buf = [0u8; 13 + TAG_LEN];
        buf[..13].copy_from_slice(b"hello, bridge");
        let tag = a.seal(5, b"hdr", &mut buf[..13]);
        buf[13..].copy_from_slice(&tag);
        assert_ne!(&buf[..13], b"hello, bridge");
        let mut copy = buf;
        assert!(a.open(5, b"hdr", &mut copy));
        assert_eq!(&copy[..13], b"hello, bridge");
        let mut copy = buf;
        assert!(!a.open(6, b"hdr", &mut copy), "wrong counter");
        let mut copy = buf;
        assert!(!a.open(5, b"hdX", &mut copy), "wrong aad");
        for bit in [0, 13 * 8, (13 + TAG_LEN) * 8 - 1] {
            let mut copy = buf;
            copy[bit / 8] ^= 1 << (bit % 8);
            assert!(!a.open(5, b"hdr", &mut copy), "flipped bit {bit}");
        }
        assert!(
            !a.open(5, b"hdr", &mut buf[..TAG_LEN - 1]),
            "shorter than a tag"
        );
        let mut empty = [0u8; TAG_LEN];
        let tag = a.seal(7, b"", &mut []);
        empty.copy_from_slice(&tag);
        assert!(
            a.open(7, b"", &mut empty),
            "an empty message has just a tag"
        );
    }

    /// The data path's AES-256-GCM (AWS-LC) and the handshake's (the
    /// `aes-gcm` crate, checked against the GCM spec above) agree at every
    /// length the tunnel uses, and each opens what the other sealed.
    #[test]
    fn transport_key_agrees_with_aes_gcm() {
        let key = [0x3c; 32];
        let t = TransportKey::new(&key);
        let reference = Aes256Gcm::new((&key).into());
        for len in [0, 1, 15, 16, 17, 64, 255, 1400, 1518, 9000, 65535] {
            let plain: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
            let counter = len as u64 * 1_000_003;
            let aad = [len as u8; 16];
            let mut ours = plain.clone();
            let tag = t.seal(counter, &aad, &mut ours);
            let mut theirs = plain.clone();
            let their_tag = reference
                .encrypt_inout_detached(
                    &nonce(counter),
                    &aad,
                    InOutBuf::from(theirs.as_mut_slice()),
                )
                .expect("seal");
            assert_eq!(ours, theirs, "ciphertext at {len}");
            assert_eq!(tag.as_slice(), their_tag.as_slice(), "tag at {len}");
            reference
                .decrypt_inout_detached(
                    &nonce(counter),
                    &aad,
                    InOutBuf::from(theirs.as_mut_slice()),
                    &their_tag,
                )
                .expect("aes-gcm opens what AWS-LC sealed");
            assert_eq!(theirs, plain);
            ours.extend_from_slice(&tag);
            assert!(t.open(counter, &aad, &mut ours), "open at {len}");
            assert_eq!(&ours[..len], plain.as_slice());
        }
    }

    #[test]
    fn mac_verifies_and_rejects() {
        let k = MacKey::new(&[1; 32], b"b");
        let m = k.compute(b"message");
        assert!(k.verify(b"message", &m));
        assert!(!k.verify(b"messagf", &m));
        assert!(!MacKey::new(&[2; 32], b"b").verify(b"message", &m));
        assert!(
            !MacKey::new(&[1; 32], b"c").verify(b"message", &m),
            "meant for another site"
        );
        // The name is length-prefixed: ("ab", psk) and ("a", ...) differ.
        assert!(MacKey::new(&[1; 32], b"ab") != MacKey::new(&[1; 32], b"a"));
    }

    #[test]
    fn key_hint_binds_key_and_responder() {
        let h = key_hint(&[1; 32], b"hub");
        assert_eq!(h, key_hint(&[1; 32], b"hub"), "deterministic");
        assert_ne!(h, key_hint(&[2; 32], b"hub"), "key");
        assert_ne!(h, key_hint(&[1; 32], b"spoke"), "responder");
        // Not the first bytes of the MAC key of the same key and name.
        assert_ne!(&h[..], &MacKey::new(&[1; 32], b"hub").0[..HINT_LEN]);
    }

    #[test]
    fn cookie_reply_seals_for_the_key_holder_only() {
        let secret = CookieSecret::new([9; 32]);
        let from: std::net::SocketAddr = "198.18.0.2:51901".parse().expect("addr");
        let cookie = secret.cookie(from);
        assert_ne!(
            cookie,
            secret.cookie("198.18.0.2:51902".parse().expect("addr"))
        );
        assert_eq!(
            secret.cookie("[::ffff:198.18.0.2]:51901".parse().expect("addr")),
            cookie
        );
        let k = CookieKey::new(&[1; 32], b"hub");
        let sealed = k.seal(&[7; 12], b"mac1", &cookie);
        assert_eq!(k.open(&[7; 12], b"mac1", &sealed), Some(cookie));
        assert_eq!(k.open(&[8; 12], b"mac1", &sealed), None);
        assert_eq!(k.open(&[7; 12], b"mac2", &sealed), None);
        assert_eq!(
            CookieKey::new(&[2; 32], b"hub").open(&[7; 12], b"mac1", &sealed),
            None
        );
        assert_eq!(
            CookieKey::new(&[1; 32], b"other").open(&[7; 12], b"mac1", &sealed),
            None
        );
    }
}
