#!/usr/bin/env python3
"""guard_frames.py — raw Ethernet frames for the guard tests (tests/e2e/guard_*.sh).

Plain AF_PACKET sockets, no third-party modules. Every mode is bounded in time.

  guard_frames.py storm IFACE PPS SECS [ETHERTYPE [SRC]]
                                           broadcast frames at PPS for SECS (ether type
                                           0x88b6 unless given, e.g. 0x88b5; from IFACE's
                                           MAC, or with SRC "random" each from a fresh
                                           locally administered MAC); prints
                                           "sent N frames in T s = R/s"
  guard_frames.py bcast IFACE              one broadcast frame (ether type 0x88b6)
  guard_frames.py dhcp-server IFACE SECS   answer every DHCPDISCOVER with a broadcast
                                           DHCPOFFER (and an 802.1Q-tagged copy)
  guard_frames.py dhcp-client IFACE SECS   broadcast a DHCPDISCOVER every 0.5 s; print
                                           the number of DHCPOFFERs received
  guard_frames.py ra IFACE SECS            every 0.25 s: an IPv6 router advertisement and
                                           a DHCPv6 ADVERTISE, untagged and tagged
  guard_frames.py bpdu IFACE SECS          a spanning-tree BPDU every 0.25 s
  guard_frames.py count IFACE SECS         print "dhcpv4=N ra=N dhcpv6=N bpdu=N": server
                                           messages and BPDUs seen on IFACE

VLAN modes (tests/e2e/vlan_frames.sh). VID is a VLAN number, or "-" for untagged;
MACs are aa:bb:cc:dd:ee:ff or "self" (IFACE's own). Tagged frames are received
with their tag (PACKET_AUXDATA: the kernel moves a received tag out of the frame).

  guard_frames.py dhcp-client-tag IFACE VID SECS   dhcp-client, in VLAN VID
  guard_frames.py arp-ask IFACE VID IP SECS        an ARP request for IP every 0.5 s, in
                                                   VLAN VID; print the replies received
  guard_frames.py mark IFACE VID SRC DST N         N marked frames (ether type 0x88b6),
                                                   0.1 s apart, from SRC to DST
  guard_frames.py vlan-count IFACE SECS            print what arrived on IFACE as
                                                   "KIND.VLAN[.DST]=N" tokens: discover,
                                                   arp (requests), mark.VLAN.DST
"""

import os
import socket
import struct
import sys
import time

ETH_P_ALL = 0x0003
BCAST = b"\xff" * 6
VLAN = 42


def iface_mac(iface):
    with open(f"/sys/class/net/{iface}/address") as f:
        return bytes.fromhex(f.read().strip().replace(":", ""))


def raw(iface, recv=False):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL) if recv else 0)
    s.bind((iface, ETH_P_ALL if recv else 0))
    return s


def csum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return (~total) & 0xFFFF


def eth(dst, src, ethertype, payload, tag=None):
    head = dst + src
    if tag is not None:
        head += struct.pack("!HH", 0x8100, tag)
    frame = head + struct.pack("!H", ethertype) + payload
    return frame + b"\0" * max(0, 60 - len(frame))


def ipv4_udp(src, dst, sport, dport, payload):
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, src, dst)
    hdr = hdr[:10] + struct.pack("!H", csum(hdr)) + hdr[12:]
    return hdr + udp


def ipv6(src, dst, nh, payload):
    return struct.pack("!IHBB", 0x60000000, len(payload), nh, 255) + src + dst + payload


def icmpv6(src, dst, body):
    pseudo = src + dst + struct.pack("!I3xB", len(body), 58)
    c = csum(pseudo + body)
    return body[:2] + struct.pack("!H", c) + body[4:]


def udp6(src, dst, sport, dport, payload):
    length = 8 + len(payload)
    body = struct.pack("!HHHH", sport, dport, length, 0) + payload
    pseudo = src + dst + struct.pack("!I3xB", length, 17)
    return body[:6] + struct.pack("!H", csum(pseudo + body) or 0xFFFF) + body[8:]


def bootp(op, xid, chaddr, yiaddr=b"\0" * 4, msg_type=1, server=b"\0" * 4):
    # A well-formed message needs a 6-byte chaddr; the guard tests' fake client and
    # server pass 16 bytes, which only they understand (the cookie lands 10 bytes late).
    p = struct.pack("!BBBBIHH", op, 1, 6, 0, xid, 0, 0x8000)
    p += b"\0" * 4 + yiaddr + server + b"\0" * 4 + chaddr + b"\0" * 10
    p += b"\0" * 192 + b"\x63\x82\x53\x63"
    p += bytes([53, 1, msg_type])
    if op == 2:
        p += bytes([54, 4]) + server + bytes([51, 4]) + struct.pack("!I", 600)
        p += bytes([1, 4, 255, 255, 255, 0])
    return p + b"\xff"


def strip_tags(frame):
    """(ether type, payload) after any 802.1Q/802.1ad tags."""
    at = 12
    while len(frame) >= at + 2 and frame[at:at + 2] in (b"\x81\x00", b"\x88\xa8"):
        at += 4
    if len(frame) < at + 2:
        return None, b""
    return struct.unpack("!H", frame[at:at + 2])[0], frame[at + 2:]


STP_DST = bytes.fromhex("0180c2000000")


def kind(frame):
    if frame[:6] == STP_DST:
        return "bpdu", None
    et, p = strip_tags(frame)
    if et == 0x0800 and len(p) >= 28 and p[9] == 17:
        ihl = (p[0] & 0x0F) * 4
        sport, dport = struct.unpack("!HH", p[ihl:ihl + 4])
        op = p[ihl + 8] if len(p) > ihl + 8 else 0
        if sport == 67 and dport == 68 and op == 2:
            return "dhcpv4", p[ihl + 8:]
        if sport == 68 and dport == 67 and op == 1:
            return "discover", p[ihl + 8:]
    if et == 0x86DD and len(p) >= 48:
        if p[6] == 58 and p[40] == 134:
            return "ra", None
        if p[6] == 17 and struct.unpack("!HH", p[40:44]) == (547, 546):
            return "dhcpv6", None
    return None, None


def storm(iface, pps, secs, ethertype="0x88b6", src="self"):
    s = raw(iface)
    frame = bytearray(eth(BCAST, iface_mac(iface), int(ethertype, 16),
                          b"tapbridge storm test".ljust(46, b"\0")))
    if src == "random":
        frame[6:8] = b"\x02\x5a"  # locally administered unicast; bytes 8..11 count up
    elif src != "self":
        sys.exit(f"storm: SRC must be self or random, not {src}")
    pps, secs = int(pps), float(secs)
    sent, start = 0, time.monotonic()
    end = start + secs
    batch = max(1, pps // 1000)
    while True:
        now = time.monotonic()
        if now >= end:
            break
        due = int((now - start) * pps)
        if sent >= due:
            time.sleep(0.0005)
            continue
        for _ in range(min(batch, due - sent)):
            if src == "random":
                frame[8:12] = struct.pack("!I", sent)
            try:
                s.send(frame)
                sent += 1
            except OSError:  # ENOBUFS: the queue is full; the rate says so
                break
    took = time.monotonic() - start
    print(f"sent {sent} frames in {took:.2f} s = {sent / took:.0f}/s")


def bcast(iface):
    s = raw(iface)
    s.send(eth(BCAST, iface_mac(iface), 0x88B6, b"tapbridge loop test".ljust(46, b"\0")))


def dhcp_server(iface, secs):
    s = raw(iface, recv=True)
    s.settimeout(0.2)
    src = iface_mac(iface)
    server = bytes([198, 19, 40, 99])
    end = time.monotonic() + float(secs)
    while time.monotonic() < end:
        try:
            frame = s.recv(4096)
        except socket.timeout:
            continue
        k, msg = kind(frame)
        if k != "discover":
            continue
        xid = struct.unpack("!I", msg[4:8])[0]
        offer = bootp(2, xid, msg[28:44], bytes([198, 19, 40, 150]), 2, server)
        ip = ipv4_udp(server, b"\xff" * 4, 67, 68, offer)
        for tag in (None, VLAN):
            s.send(eth(BCAST, src, 0x0800, ip, tag))


def dhcp_client(iface, secs):
    s = raw(iface, recv=True)
    s.settimeout(0.1)
    mac = iface_mac(iface)
    xid = int.from_bytes(os.urandom(4), "big")
    discover = eth(BCAST, mac, 0x0800,
                   ipv4_udp(b"\0" * 4, b"\xff" * 4, 68, 67,
                            bootp(1, xid, mac + b"\0" * 10)))

    def is_offer(frame):
        k, msg = kind(frame)
        return k == "dhcpv4" and struct.unpack("!I", msg[4:8])[0] == xid

    print(ask(s, discover, secs, lambda s: s.recv(4096), is_offer))


def ask(s, request, secs, receive, answers):
    """Send `request` every 0.5 s for `secs` seconds; return how many frames
    `receive(s)` got (None: skip it) that `answers(frame)` accepts."""
    n, next_send = 0, 0.0
    end = time.monotonic() + float(secs)
    while time.monotonic() < end:
        if time.monotonic() >= next_send:
            s.send(request)
            next_send = time.monotonic() + 0.5
        try:
            frame = receive(s)
        except socket.timeout:
            continue
        if frame is not None and answers(frame):
            n += 1
    return n


def ra(iface, secs):
    s = raw(iface)
    mac = iface_mac(iface)
    ll = bytes.fromhex("fe80000000000000") + bytes([mac[0] ^ 2]) + mac[1:3] + b"\xff\xfe" + mac[3:]
    all_nodes = bytes.fromhex("ff020000000000000000000000000001")
    # RA: hop limit 64, lifetime 1800 s, prefix 2001:2:0:40::/64.
    body = struct.pack("!BBHBBHII", 134, 0, 0, 64, 0, 1800, 0, 0)
    body += struct.pack("!BB6s", 1, 1, mac)
    body += struct.pack("!BBBBIII16s", 3, 4, 64, 0xC0, 86400, 14400, 0,
                        bytes.fromhex("20010002000000400000000000000000"))
    ra_pkt = ipv6(ll, all_nodes, 58, icmpv6(ll, all_nodes, body))
    dst6 = bytes.fromhex("fe800000000000000000000000000001")
    adv = ipv6(ll, dst6, 17, udp6(ll, dst6, 547, 546, b"\x02\x12\x34\x56"))
    frames = []
    for tag in (None, VLAN):
        frames.append(eth(b"\x33\x33\x00\x00\x00\x01", mac, 0x86DD, ra_pkt, tag))
        frames.append(eth(b"\x33\x33\x00\x00\x00\x01", mac, 0x86DD, adv, tag))
    end = time.monotonic() + float(secs)
    while time.monotonic() < end:
        for f in frames:
            s.send(f)
        time.sleep(0.25)


def bpdu(iface, secs):
    s = raw(iface)
    mac = iface_mac(iface)
    # 802.3 length, LLC 42 42 03, a configuration BPDU (root = this bridge).
    body = b"\x42\x42\x03" + struct.pack("!HBBB", 0, 0, 0, 0)
    body += struct.pack("!H6sIH6sHHHHH", 0x8000, mac, 0, 0x8000, mac, 0x8001, 0, 20 * 256,
                        2 * 256, 15 * 256)
    frame = STP_DST + mac + struct.pack("!H", len(body)) + body
    frame += b"\0" * max(0, 60 - len(frame))
    end = time.monotonic() + float(secs)
    while time.monotonic() < end:
        s.send(frame)
        time.sleep(0.25)


def count(iface, secs):
    s = raw(iface, recv=True)
    s.settimeout(0.1)
    seen = {"dhcpv4": 0, "ra": 0, "dhcpv6": 0, "bpdu": 0}
    end = time.monotonic() + float(secs)
    while time.monotonic() < end:
        try:
            frame = s.recv(4096)
        except socket.timeout:
            continue
        k, _ = kind(frame)
        if k in seen:
            seen[k] += 1
    print(" ".join(f"{k}={v}" for k, v in seen.items()))


SOL_PACKET = 263
PACKET_AUXDATA = 8
TP_STATUS_VLAN_VALID = 1 << 4
TP_STATUS_VLAN_TPID_VALID = 1 << 6
PACKET_OUTGOING = 4
MARK = b"tapbridge vlan test"


def vid_arg(vid):
    return None if vid == "-" else int(vid)


def mac_arg(iface, mac):
    return iface_mac(iface) if mac == "self" else bytes.fromhex(mac.replace(":", ""))


def raw_tagged(iface):
    """A receiving socket that gets each frame's VLAN tag back (auxdata)."""
    s = raw(iface, recv=True)
    s.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
    return s


def recv_tagged(s):
    """(frame with its tag put back, outgoing?)."""
    data, anc, _flags, addr = s.recvmsg(4096, socket.CMSG_SPACE(32))
    for level, kind_, cdata in anc:
        if level == SOL_PACKET and kind_ == PACKET_AUXDATA and len(cdata) >= 20:
            status, _, _, _, _, tci, tpid = struct.unpack("IIIHHHH", cdata[:20])
            if status & TP_STATUS_VLAN_VALID:
                if not status & TP_STATUS_VLAN_TPID_VALID:
                    tpid = 0x8100
                data = data[:12] + struct.pack("!HH", tpid, tci) + data[12:]
    return data, addr[2] == PACKET_OUTGOING


def recv_incoming(s):
    """The next frame that came in (tag put back), None for one we sent."""
    frame, out = recv_tagged(s)
    return None if out else frame


def outer_vid(frame):
    if len(frame) >= 16 and frame[12:14] in (b"\x81\x00", b"\x88\xa8"):
        return struct.unpack("!H", frame[14:16])[0] & 0x0FFF
    return None


def dhcp_client_tag(iface, vid, secs):
    s = raw_tagged(iface)
    s.settimeout(0.1)
    mac = iface_mac(iface)
    tag = vid_arg(vid)
    xid = int.from_bytes(os.urandom(4), "big")
    discover = eth(BCAST, mac, 0x0800,
                   ipv4_udp(b"\0" * 4, b"\xff" * 4, 68, 67,
                            bootp(1, xid, mac)), tag)

    def is_offer(frame):
        k, msg = kind(frame)
        return k == "dhcpv4" and struct.unpack("!I", msg[4:8])[0] == xid

    print(ask(s, discover, secs, recv_incoming, is_offer))


def arp_ask(iface, vid, ip, secs):
    s = raw_tagged(iface)
    s.settimeout(0.1)
    mac = iface_mac(iface)
    tag = vid_arg(vid)
    target = socket.inet_aton(ip)
    body = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + mac + bytes([198, 19, 40, 10])
    body += b"\0" * 6 + target
    request = eth(BCAST, mac, 0x0806, body, tag)

    def is_reply(frame):
        et, p = strip_tags(frame)
        return et == 0x0806 and len(p) >= 28 and p[7] == 2 and p[14:18] == target

    print(ask(s, request, secs, recv_incoming, is_reply))


def mark(iface, vid, src, dst, n):
    s = raw(iface)
    frame = eth(mac_arg(iface, dst), mac_arg(iface, src), 0x88B6, MARK.ljust(46, b"\0"),
                vid_arg(vid))
    for i in range(int(n)):
        if i:
            time.sleep(0.1)
        s.send(frame)


def vlan_count(iface, secs):
    s = raw_tagged(iface)
    s.settimeout(0.1)
    seen = {}
    end = time.monotonic() + float(secs)
    while time.monotonic() < end:
        try:
            frame, out = recv_tagged(s)
        except socket.timeout:
            continue
        if out:
            continue
        vid = outer_vid(frame)
        where = "u" if vid is None else str(vid)
        et, p = strip_tags(frame)
        k, _ = kind(frame)
        if k == "discover":
            key = f"discover.{where}"
        elif et == 0x0806 and len(p) >= 8 and p[7] == 1:
            key = f"arp.{where}"
        elif et == 0x88B6 and p.startswith(MARK):
            key = f"mark.{where}.{frame[:6].hex()}"
        else:
            continue
        seen[key] = seen.get(key, 0) + 1
    print(" ".join(f"{k}={v}" for k, v in sorted(seen.items())))


MODES = {
    "storm": (storm, (3, 4, 5)),
    "bcast": (bcast, 1),
    "dhcp-server": (dhcp_server, 2),
    "dhcp-client": (dhcp_client, 2),
    "ra": (ra, 2),
    "bpdu": (bpdu, 2),
    "count": (count, 2),
    "dhcp-client-tag": (dhcp_client_tag, 3),
    "arp-ask": (arp_ask, 4),
    "mark": (mark, 5),
    "vlan-count": (vlan_count, 2),
}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in MODES:
        sys.exit(__doc__)
    arity = MODES[sys.argv[1]][1]
    if len(sys.argv) - 2 not in (arity if isinstance(arity, tuple) else (arity,)):
        sys.exit(__doc__)
    MODES[sys.argv[1]][0](*sys.argv[2:])
