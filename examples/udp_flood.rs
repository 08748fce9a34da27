//! udp_flood — datagrams shaped like tunnel handshake initiations, at a
//! fixed rate, from one socket: the outsider of `tests/e2e/hub_garbage.sh`.
//!
//! ```text
//! udp_flood --to ADDR:PORT --rate PPS --seconds S [--bind ADDR] [--max N]
//! ```
//!
//! Each datagram has an initiation's length and first four bytes, and
//! random bytes after them (so a random key hint, mac1 and payload): what
//! someone without a key can send. 256 such datagrams are made up front and
//! sent in turn, in batches paced to `--rate` (open loop: a slow receiver
//! does not slow the sender). The run ends after `--seconds` or `--max`
//! datagrams (default: rate × seconds). Prints one JSON line: datagrams
//! sent, send errors, seconds, datagrams per second. Exit status 0, or 2
//! on usage or socket errors.

use std::net::{SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use tapbridge::wire::tunnel::{MessageType, field};

struct Args {
    to: SocketAddr,
    bind: Option<SocketAddr>,
    rate: u64,
    seconds: u64,
    max: Option<u64>,
}

fn parse() -> Result<Args, String> {
    let mut to = None;
    let mut bind = None;
    let mut rate = None;
    let mut seconds = None;
    let mut max = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |what: &str| format!("{flag}: {value:?} is not {what}");
        match flag.as_str() {
            "--to" => to = Some(value.parse().map_err(|_| bad("an ADDR:PORT"))?),
            "--bind" => {
                let ip: std::net::IpAddr = value.parse().map_err(|_| bad("an address"))?;
                bind = Some(SocketAddr::new(ip, 0));
            }
            "--rate" => rate = Some(value.parse().map_err(|_| bad("a number"))?),
            "--seconds" => seconds = Some(value.parse().map_err(|_| bad("a number"))?),
            "--max" => max = Some(value.parse().map_err(|_| bad("a number"))?),
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok(Args {
        to: to.ok_or("--to is required")?,
        bind,
        rate: rate.ok_or("--rate is required")?,
        seconds: seconds.ok_or("--seconds is required")?,
        max,
    })
}

/// xorshift64*: the garbage needs no quality, only variety.
fn fill(state: &mut u64, buf: &mut [u8]) {
    for b in buf {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *b = (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8;
    }
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("udp_flood: {e}");
            return ExitCode::from(2);
        }
    };
    let local = args.bind.unwrap_or_else(|| {
        if args.to.is_ipv4() {
            "0.0.0.0:0".parse().expect("literal")
        } else {
            "[::]:0".parse().expect("literal")
        }
    });
    let sock = match UdpSocket::bind(local) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("udp_flood: cannot bind {local}: {e}");
            return ExitCode::from(2);
        }
    };
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64 ^ u64::from(std::process::id());
    let pool: Vec<Vec<u8>> = (0..256)
        .map(|_| {
            let mut d = vec![0u8; field::INIT_LEN];
            fill(&mut seed, &mut d);
            d[..4].copy_from_slice(&MessageType::Initiation.head());
            d
        })
        .collect();
    let max = args.max.unwrap_or(args.rate * args.seconds);
    let start = Instant::now();
    let end = start + Duration::from_secs(args.seconds);
    let (mut sent, mut errors) = (0u64, 0u64);
    const BATCH: u64 = 32;
    while sent + errors < max && Instant::now() < end {
        // Where the schedule says we should be; sleep if ahead.
        let due = Duration::from_secs_f64((sent + errors) as f64 / args.rate as f64);
        let at = start + due;
        let now = Instant::now();
        if at > now {
            std::thread::sleep(at - now);
        }
        for _ in 0..BATCH.min(max - sent - errors) {
            let d = &pool[((sent + errors) % 256) as usize];
            match sock.send_to(d, args.to) {
                Ok(_) => sent += 1,
                Err(_) => errors += 1,
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{{\"sent\": {sent}, \"errors\": {errors}, \"seconds\": {secs:.2}, \"pps\": {:.0}}}",
        sent as f64 / secs.max(1e-9)
    );
    ExitCode::SUCCESS
}
