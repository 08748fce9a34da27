#!/usr/bin/env python3
"""Which worker of a hub the steering program sends a peer's datagrams to.

The same function as src/datapath/udp/steer.rs (`worker_for`): for IPv4 the
source address XOR the source port, for IPv6 the XOR of the address's four
32-bit words; times 0x9E3779B1 modulo 2^32, the high 16 bits, modulo the
number of workers. The tests and benchmarks use it to place peers.

  steer.py worker ADDR PORT WORKERS   -> the worker (0-based) for ADDR:PORT
  steer.py pick PREFIX PORT WORKERS   -> one address PREFIX.N (N = 2..254) per
                                         worker, in worker order, one per line
"""

import ipaddress
import sys


def worker(addr, port, workers):
    a = ipaddress.ip_address(addr)
    if a.version == 6 and a.ipv4_mapped is not None:
        a = a.ipv4_mapped
    if a.version == 4:
        key = int(a) ^ port
    else:
        b = a.packed
        key = 0
        for i in range(0, 16, 4):
            key ^= int.from_bytes(b[i : i + 4], "big")
    return (((key * 0x9E3779B1) & 0xFFFFFFFF) >> 16) % max(workers, 1)


def pick(prefix, port, workers):
    found = {}
    for last in range(2, 255):
        addr = f"{prefix}.{last}"
        found.setdefault(worker(addr, port, workers), addr)
    if len(found) < workers:
        raise ValueError(f"no address under {prefix} for every one of {workers} workers")
    return [found[w] for w in range(workers)]


def main(argv):
    try:
        if len(argv) == 4 and argv[0] == "worker":
            print(worker(argv[1], int(argv[2]), int(argv[3])))
            return 0
        if len(argv) == 4 and argv[0] == "pick":
            print("\n".join(pick(argv[1], int(argv[2]), int(argv[3]))))
            return 0
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print("usage: steer.py worker ADDR PORT WORKERS | pick PREFIX PORT WORKERS", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
