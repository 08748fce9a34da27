//! AES-256-GCM implementations side by side (issue 12, lever 3): the
//! `aes-gcm` crate the tunnel uses, `ring` and `aws-lc-rs`, sealing and
//! opening in place at the sizes the tunnel sees: 64-byte frames, 1400-byte
//! segments and 64 KiB (a GSO batch's worth, for the asymptote).
//!
//! Run with `cargo bench --bench aead`. Criterion reports bytes/s. Every
//! implementation's output is checked against the others once before
//! measuring, so a benchmark of something that is not AES-256-GCM fails.

#![allow(missing_docs)]

use std::hint::black_box;

use aes_gcm::aead::inout::InOutBuf;
use aes_gcm::{AeadInOut, Aes256Gcm, KeyInit, Nonce};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const KEY: [u8; 32] = [0x42; 32];
const AAD: [u8; 16] = [7; 16];
const SIZES: [usize; 3] = [64, 1400, 65536];

fn nonce_bytes(counter: u64) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_be_bytes());
    n
}

fn seal_aes_gcm(c: &Aes256Gcm, counter: u64, buf: &mut [u8]) -> [u8; 16] {
    let n = Nonce::from(nonce_bytes(counter));
    c.encrypt_inout_detached(&n, &AAD, InOutBuf::from(buf))
        .expect("in-place seal")
        .into()
}

fn open_aes_gcm(c: &Aes256Gcm, counter: u64, buf: &mut [u8], tag: &[u8; 16]) -> bool {
    let n = Nonce::from(nonce_bytes(counter));
    c.decrypt_inout_detached(&n, &AAD, InOutBuf::from(buf), tag.into())
        .is_ok()
}

fn seal_ring(k: &ring::aead::LessSafeKey, counter: u64, buf: &mut [u8]) -> [u8; 16] {
    let n = ring::aead::Nonce::assume_unique_for_key(nonce_bytes(counter));
    let tag = k
        .seal_in_place_separate_tag(n, ring::aead::Aad::from(AAD), buf)
        .expect("in-place seal");
    let mut t = [0u8; 16];
    t.copy_from_slice(tag.as_ref());
    t
}

fn open_ring(k: &ring::aead::LessSafeKey, counter: u64, buf: &mut [u8], tag: &[u8; 16]) -> bool {
    let n = ring::aead::Nonce::assume_unique_for_key(nonce_bytes(counter));
    k.open_in_place_separate_tag(n, ring::aead::Aad::from(AAD), (*tag).into(), buf, 0..)
        .is_ok()
}

fn seal_awslc(k: &aws_lc_rs::aead::LessSafeKey, counter: u64, buf: &mut [u8]) -> [u8; 16] {
    let n = aws_lc_rs::aead::Nonce::assume_unique_for_key(nonce_bytes(counter));
    let tag = k
        .seal_in_place_separate_tag(n, aws_lc_rs::aead::Aad::from(AAD), buf)
        .expect("in-place seal");
    let mut t = [0u8; 16];
    t.copy_from_slice(tag.as_ref());
    t
}

/// Opens `sealed` = ciphertext then tag, in place (the tunnel's layout).
fn open_awslc(k: &aws_lc_rs::aead::LessSafeKey, counter: u64, sealed: &mut [u8]) -> bool {
    let n = aws_lc_rs::aead::Nonce::assume_unique_for_key(nonce_bytes(counter));
    k.open_in_place(n, aws_lc_rs::aead::Aad::from(AAD), sealed)
        .is_ok()
}

fn bench(c: &mut Criterion) {
    let rustcrypto = Aes256Gcm::new(&KEY.into());
    let ring_key = ring::aead::LessSafeKey::new(
        ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, &KEY).expect("32-byte key"),
    );
    let awslc_key = aws_lc_rs::aead::LessSafeKey::new(
        aws_lc_rs::aead::UnboundKey::new(&aws_lc_rs::aead::AES_256_GCM, &KEY).expect("32-byte key"),
    );

    // The three agree, and each opens what the others sealed.
    for size in SIZES {
        let plain: Vec<u8> = (0..size).map(|i| i as u8).collect();
        let (mut a, mut b, mut w) = (plain.clone(), plain.clone(), plain.clone());
        let ta = seal_aes_gcm(&rustcrypto, 9, &mut a);
        let tb = seal_ring(&ring_key, 9, &mut b);
        let tw = seal_awslc(&awslc_key, 9, &mut w);
        assert!(
            a == b && b == w && ta == tb && tb == tw,
            "same ciphertext at {size}"
        );
        assert!(open_ring(&ring_key, 9, &mut a, &ta) && a == plain);
        assert!(open_aes_gcm(&rustcrypto, 9, &mut b, &tb) && b == plain);
        w.extend_from_slice(&tw);
        assert!(open_awslc(&awslc_key, 9, &mut w) && w[..size] == plain[..]);
    }

    for size in SIZES {
        let mut g = c.benchmark_group(format!("aead/{size}"));
        g.throughput(Throughput::Bytes(size as u64));
        let mut buf = vec![0u8; size];
        let mut n = 0u64;
        g.bench_function("aes-gcm seal", |b| {
            b.iter(|| {
                n += 1;
                black_box(seal_aes_gcm(&rustcrypto, n, &mut buf))
            })
        });
        g.bench_function("ring seal", |b| {
            b.iter(|| {
                n += 1;
                black_box(seal_ring(&ring_key, n, &mut buf))
            })
        });
        g.bench_function("aws-lc-rs seal", |b| {
            b.iter(|| {
                n += 1;
                black_box(seal_awslc(&awslc_key, n, &mut buf))
            })
        });
        // Open: a fixed sealed message, restored before each open (the copy
        // is in every row alike).
        let sealed: Vec<u8> = (0..size).map(|i| i as u8).collect();
        let mut s = sealed.clone();
        let tag = seal_ring(&ring_key, 1, &mut s);
        let ct = s.clone();
        g.bench_function("aes-gcm open", |b| {
            b.iter(|| {
                s.copy_from_slice(&ct);
                assert!(open_aes_gcm(&rustcrypto, 1, &mut s, &tag));
            })
        });
        g.bench_function("ring open", |b| {
            b.iter(|| {
                s.copy_from_slice(&ct);
                assert!(open_ring(&ring_key, 1, &mut s, &tag));
            })
        });
        let mut sealed_tagged = ct.clone();
        sealed_tagged.extend_from_slice(&tag);
        let mut st = sealed_tagged.clone();
        g.bench_function("aws-lc-rs open", |b| {
            b.iter(|| {
                st.copy_from_slice(&sealed_tagged);
                assert!(open_awslc(&awslc_key, 1, &mut st));
            })
        });
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
