#!/usr/bin/env python3
"""Capture-and-replay attack traffic for tests/e2e/handshake_attacks.sh.

Every load is bounded in count and time; nothing here is sent unless a test runs it
inside a network namespace it created (addresses from 198.18.0.0/15 only).

  extract PCAP OUT.json        tunnel handshake messages found in PCAP (initiations, type 1,
                               148 bytes; responses, type 2, 88 bytes), with addresses, MACs and
                               the UDP payload in hex; prints a one-line summary
  flood   --in OUT.json --select SRC>DST --iface IF --dst-mac MAC --src IP:PORT --dst IP:PORT
          --rate PPS --seconds S --max N
                               replay the selected messages round robin as raw Ethernet frames
                               with a spoofed source (scapy L2 socket), paced at PPS, for S
                               seconds or N frames; prints JSON {sent, seconds, pps, by_type}
  send    --in OUT.json --select SRC>DST --bind IP[:PORT] --dst IP:PORT --count N --rate PPS
                               send the selected payloads from a plain UDP socket (this host's
                               own address), N in all; prints JSON {sent, replies}
  relay   --bind IP:PORT --dst IP:PORT --seconds S --select SRC>DST
                               read a pcap stream (tcpdump -U -w -) on stdin and send each
                               selected initiation on at once from this host's own address;
                               counts what comes back; prints JSON {relayed, replies}

  sample  --bin BRIDGE_CTL --every SECS --seconds S --out FILE LABEL=NS,NAME,CONF,PEER...
                               `status NAME --config CONF --json` in namespace NS every SECS
                               for S seconds; writes each sample of peer PEER as a JSON line to
                               FILE and prints a summary per LABEL (samples, states, endpoints)

SRC>DST selects messages by IPv4 source and destination ("*" matches any); a type can
be added as SRC>DST:TYPE.
"""

import argparse
import json
import os
import queue
import select
import socket
import sys
import threading
import time

INITIATION, RESPONSE = 1, 2
SIZES = {INITIATION: 148, RESPONSE: 88}


def hostport(text):
    host, _, port = text.rpartition(":")
    if not host:
        return text, 0
    return host, int(port)


def load_scapy():
    try:
        from scapy.all import conf  # noqa: F401
    except ImportError:
        sys.exit("python3-scapy is needed (Debian package python3-scapy)")
    import scapy.all as scapy

    scapy.conf.verb = 0
    return scapy


def select_msgs(msgs, spec):
    src, _, rest = spec.partition(">")
    dst, _, ty = rest.partition(":")
    out = []
    for m in msgs:
        if src not in ("*", m["src"]) or dst not in ("*", m["dst"]):
            continue
        if ty and int(ty) != m["type"]:
            continue
        out.append(m)
    return out


def cmd_extract(args):
    scapy = load_scapy()
    msgs, other = [], 0
    for pkt in scapy.PcapReader(args.pcap):
        if not (pkt.haslayer(scapy.IP) and pkt.haslayer(scapy.UDP)):
            continue
        payload = bytes(pkt[scapy.UDP].payload)
        if len(payload) < 2 or payload[0] not in SIZES:
            other += 1
            continue
        msgs.append(
            {
                "time": float(pkt.time),
                "src": pkt[scapy.IP].src,
                "dst": pkt[scapy.IP].dst,
                "sport": pkt[scapy.UDP].sport,
                "dport": pkt[scapy.UDP].dport,
                "src_mac": pkt[scapy.Ether].src if pkt.haslayer(scapy.Ether) else None,
                "dst_mac": pkt[scapy.Ether].dst if pkt.haslayer(scapy.Ether) else None,
                "type": payload[0],
                "version": payload[1],
                "len": len(payload),
                "hex": payload.hex(),
            }
        )
    with open(args.out, "w") as f:
        json.dump(msgs, f)
    pairs = {}
    for m in msgs:
        key = f"{m['src']}>{m['dst']}:{m['type']}"
        pairs[key] = pairs.get(key, 0) + 1
    print(json.dumps({"handshake_messages": len(msgs), "other_datagrams": other, "by_flow": pairs}))


def pace(rate, started, sent):
    """Sleep until frame number `sent` is due at `rate` per second."""
    due = started + sent / rate
    delay = due - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def cmd_flood(args):
    scapy = load_scapy()
    with open(args.input) as f:
        msgs = select_msgs(json.load(f), args.select)
    if not msgs:
        sys.exit(f"no captured message matches {args.select}")
    sip, sport = hostport(args.src)
    dip, dport = hostport(args.dst)
    frames = []
    for m in msgs:
        pkt = (
            scapy.Ether(dst=args.dst_mac, src=scapy.get_if_hwaddr(args.iface))
            / scapy.IP(src=sip, dst=dip, ttl=64)
            / scapy.UDP(sport=sport, dport=dport)
            / scapy.Raw(bytes.fromhex(m["hex"]))
        )
        frames.append((m["type"], bytes(pkt)))
    sock = scapy.conf.L2socket(iface=args.iface)
    by_type = {}
    sent = errors = 0
    started = time.monotonic()
    deadline = started + args.seconds
    batch = max(1, args.rate // 200)  # wake up about every 5 ms
    try:
        while sent < args.max and time.monotonic() < deadline:
            for _ in range(batch):
                ty, raw = frames[sent % len(frames)]
                try:
                    sock.send(raw)
                except OSError:
                    errors += 1
                sent += 1
                by_type[ty] = by_type.get(ty, 0) + 1
                if sent >= args.max:
                    break
            pace(args.rate, started, sent)
    finally:
        sock.close()
    secs = time.monotonic() - started
    print(
        json.dumps(
            {
                "sent": sent,
                "send_errors": errors,
                "seconds": round(secs, 3),
                "pps": round(sent / secs, 1) if secs > 0 else 0,
                "distinct_messages": len(frames),
                "by_type": {str(k): v for k, v in sorted(by_type.items())},
            }
        )
    )


def count_replies(sock, replies):
    while True:
        r, _, _ = select.select([sock], [], [], 0)
        if not r:
            return
        data, peer = sock.recvfrom(2048)
        key = f"{peer[0]}:{peer[1]}:{data[0] if data else -1}"
        replies[key] = replies.get(key, 0) + 1


def udp_socket(bind):
    ip, port = hostport(bind)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((ip, port))
    return s


def cmd_send(args):
    with open(args.input) as f:
        msgs = select_msgs(json.load(f), args.select)
    if not msgs:
        sys.exit(f"no captured message matches {args.select}")
    sock = udp_socket(args.bind)
    dst = hostport(args.dst)
    replies = {}
    started = time.monotonic()
    sent = 0
    while sent < args.count:
        sock.sendto(bytes.fromhex(msgs[sent % len(msgs)]["hex"]), dst)
        sent += 1
        count_replies(sock, replies)
        pace(args.rate, started, sent)
    # Anything that answers does so at once; wait a little for it.
    end = time.monotonic() + args.linger
    while time.monotonic() < end:
        count_replies(sock, replies)
        time.sleep(0.05)
    print(json.dumps({"sent": sent, "distinct_messages": len(msgs), "replies": replies}))


def cmd_relay(args):
    scapy = load_scapy()
    sock = udp_socket(args.bind)
    dst = hostport(args.dst)
    src, _, rest = args.select.partition(">")
    want_dst = rest.partition(":")[0]
    found = queue.Queue()

    def read_stream():
        try:
            for pkt in scapy.PcapReader(sys.stdin.buffer):
                if not (pkt.haslayer(scapy.IP) and pkt.haslayer(scapy.UDP)):
                    continue
                payload = bytes(pkt[scapy.UDP].payload)
                if len(payload) != SIZES[INITIATION] or payload[0] != INITIATION:
                    continue
                if src in ("*", pkt[scapy.IP].src) and want_dst in ("*", pkt[scapy.IP].dst):
                    found.put(payload)
        except (EOFError, OSError, ValueError):
            pass
        found.put(None)

    threading.Thread(target=read_stream, daemon=True).start()
    relayed = []
    distinct = set()
    replies = {}
    started = time.monotonic()
    deadline = started + args.seconds
    while time.monotonic() < deadline:
        count_replies(sock, replies)
        try:
            payload = found.get(timeout=0.05)
        except queue.Empty:
            continue
        if payload is None:
            break
        sock.sendto(payload, dst)
        distinct.add(payload)
        relayed.append(round(time.monotonic() - started, 2))
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        count_replies(sock, replies)
        time.sleep(0.05)
    print(json.dumps({"relayed": len(relayed), "distinct": len(distinct), "at_seconds": relayed,
                      "replies": replies}), flush=True)
    # The reader thread may still block on stdin: leave without waiting for it.
    os._exit(0)


def cmd_sample(args):
    import subprocess

    targets = []
    for t in args.targets:
        label, _, rest = t.partition("=")
        ns, name, conf, peer = rest.split(",")
        targets.append((label, ns, name, conf, peer))
    summary = {t[0]: {"samples": 0, "errors": 0, "states": {}, "endpoints": {}, "handshakes": []}
               for t in targets}
    started = time.monotonic()
    n = 0
    with open(args.out, "w") as out:
        while time.monotonic() < started + args.seconds:
            for label, ns, name, conf, peer in targets:
                sm = summary[label]
                rec = {"t": round(time.monotonic() - started, 2), "label": label}
                try:
                    r = subprocess.run(
                        ["ip", "netns", "exec", ns, "timeout", "5", args.bin, "status", name,
                         "--config", conf, "--json"],
                        capture_output=True, text=True, timeout=10, check=False)
                    p = next(x for x in json.loads(r.stdout)["peers"] if x["name"] == peer)
                    rec.update({k: p.get(k) for k in
                                ("state", "endpoint", "handshakes", "last_handshake_secs")})
                except (ValueError, KeyError, StopIteration, subprocess.SubprocessError) as e:
                    rec["error"] = repr(e)[:200]
                    sm["errors"] += 1
                else:
                    sm["states"][rec["state"]] = sm["states"].get(rec["state"], 0) + 1
                    ep = str(rec["endpoint"])
                    sm["endpoints"][ep] = sm["endpoints"].get(ep, 0) + 1
                    sm["handshakes"].append(rec["handshakes"])
                sm["samples"] += 1
                out.write(json.dumps(rec) + "\n")
            n += 1
            due = started + n * args.every
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    for sm in summary.values():
        hs = sm.pop("handshakes")
        sm["handshakes_first"] = hs[0] if hs else None
        sm["handshakes_last"] = hs[-1] if hs else None
    # When each side's handshake count went up (to the sample), for the rekey intervals.
    with open(args.out) as f:
        last = {}
        for line in f:
            rec = json.loads(line)
            h = rec.get("handshakes")
            if h is None:
                continue
            label = rec["label"]
            if label in last and h > last[label]:
                summary[label].setdefault("handshake_at", []).append(rec["t"])
            last[label] = h
    print(json.dumps(summary))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("extract")
    p.add_argument("pcap")
    p.add_argument("out")
    p = sub.add_parser("flood")
    p.add_argument("--in", dest="input", required=True)
    p.add_argument("--select", required=True)
    p.add_argument("--iface", required=True)
    p.add_argument("--dst-mac", required=True)
    p.add_argument("--src", required=True)
    p.add_argument("--dst", required=True)
    p.add_argument("--rate", type=int, required=True)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--max", type=int, required=True)
    p = sub.add_parser("send")
    p.add_argument("--in", dest="input", required=True)
    p.add_argument("--select", required=True)
    p.add_argument("--bind", required=True)
    p.add_argument("--dst", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--rate", type=int, default=100)
    p.add_argument("--linger", type=float, default=1.0)
    p = sub.add_parser("relay")
    p.add_argument("--bind", required=True)
    p.add_argument("--dst", required=True)
    p.add_argument("--select", required=True)
    p.add_argument("--seconds", type=float, required=True)
    p = sub.add_parser("sample")
    p.add_argument("--bin", required=True)
    p.add_argument("--every", type=float, required=True)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("targets", nargs="+")
    args = ap.parse_args()
    if getattr(args, "rate", 1) <= 0 or getattr(args, "count", 1) <= 0:
        sys.exit("rate and count must be positive")
    cmds = {"extract": cmd_extract, "flood": cmd_flood, "send": cmd_send, "relay": cmd_relay,
            "sample": cmd_sample}
    cmds[args.cmd](args)


if __name__ == "__main__":
    main()
