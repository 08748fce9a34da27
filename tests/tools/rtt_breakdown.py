#!/usr/bin/env python3
"""Where a ping's round trip goes, from a kernel trace (scripts/bench.sh --breakdown).

  rtt_breakdown.py TRACE --a TIDS --b TIDS --dev-a DEV --dev-b DEV --under DEV

TRACE is `perf script -F comm,pid,tid,cpu,time,event,trace` of a `perf record -a`
with the events sched:sched_wakeup, sched:sched_switch, net:net_dev_xmit,
net:netif_receive_skb and raw_syscalls:sys_enter (filtered to the tunnel
daemons' threads), taken while site A pinged site B through the tunnel. TIDS
are the comma-separated thread IDs of site A's and site B's tunnel processes;
DEV-A and DEV-B the device each daemon reads and writes (a TAP or a TUN, as
the net tracepoints name it), UNDER the underlay device (the same name at both
sites, as in bench.sh).

Each ping is followed through the trace by the events it must cause, in order:

  t0  the request enters A's tunnel device (net_dev_xmit on DEV-A, by ping)
  t1  A's daemon sends it (net_dev_xmit on UNDER)
  t2  B's daemon delivers it (netif_receive_skb on DEV-B)
  t3  B's stack answers into B's tunnel device (net_dev_xmit on DEV-B)
  t4  B's daemon sends the answer (net_dev_xmit on UNDER)
  t5  A's daemon delivers it (netif_receive_skb on DEV-A)
  t6  ping runs again (sched_switch to ping)

and for each daemon hop, when its thread started running after the hop's
first event (a wake-up, or already running). Prints the median and the 10th
and 90th percentiles of each segment in microseconds, the system calls each
site's daemon made per ping (when raw_syscalls:sys_enter was recorded), and
how many wake-ups of a daemon thread or of ping were carried out on another
CPU than the waker's (by that CPU's idle task, after an interrupt woke it:
on a VM, tens of microseconds). A ping whose chain is incomplete
(a keepalive in between, an event lost) is skipped and counted.
"""

import argparse
import re
import sys

LINE = re.compile(
    r"^\s*(?P<comm>.+?)\s+(?P<pid>-?\d+)/(?P<tid>-?\d+)\s+\[(?P<cpu>\d+)\]\s+"
    r"(?P<time>\d+\.\d+):\s+(?P<event>[\w:]+):\s*(?P<rest>.*)$")
DEV = re.compile(r"dev=(\S+)")
NEXT = re.compile(r"next_comm=(.+?) next_pid=(\d+)")
WAKE = re.compile(r"comm=(.+?) pid=(\d+) prio=\d+ target_cpu=(\d+)")


def load(path):
    events = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = LINE.match(line)
            if not m:
                continue
            events.append((float(m["time"]), int(m["tid"]), m["comm"].strip(), int(m["cpu"]),
                           m["event"], m["rest"]))
    return events


def tids(text):
    try:
        return {int(t) for t in text.split(",") if t}
    except ValueError:
        sys.exit(f"error: not a list of thread IDs: {text!r}")


def percentile(xs, q):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    i = min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))
    return xs[i]


class Chain:
    """Finds the events of one ping, in order, from an index into the trace."""

    def __init__(self, events, args):
        self.ev = events
        self.a, self.b = tids(args.a), tids(args.b)
        self.dev_a, self.dev_b, self.under = args.dev_a, args.dev_b, args.under

    def find(self, i, end, pred):
        while i < end:
            if pred(self.ev[i]):
                return i
            i += 1
        return None

    def net(self, name, dev):
        return lambda e: e[4] == name and (m := DEV.search(e[5])) is not None and m[1] == dev

    def runs(self, who):
        """An event showing a thread of `who` on a CPU: its own event, or a switch to it."""
        def pred(e):
            if e[1] in who:
                return True
            if e[4] == "sched:sched_switch":
                m = NEXT.search(e[5])
                return m is not None and int(m[2]) in who
            return False
        return pred

    def follow(self, i, end):
        """The timestamps of the ping whose request is event i, or None."""
        ev = self.ev
        t = {"t0": ev[i][0]}
        steps = [
            ("a_run", self.runs(self.a)),
            ("t1", self.net("net:net_dev_xmit", self.under)),
            ("b_run", self.runs(self.b)),
            ("t2", self.net("net:netif_receive_skb", self.dev_b)),
            ("t3", self.net("net:net_dev_xmit", self.dev_b)),
            ("t4", self.net("net:net_dev_xmit", self.under)),
            ("a_run2", self.runs(self.a)),
            ("t5", self.net("net:netif_receive_skb", self.dev_a)),
            ("t6", lambda e: e[4] == "sched:sched_switch"
             and (m := NEXT.search(e[5])) is not None and m[1] == "ping"),
        ]
        j = i
        for name, pred in steps:
            k = self.find(j, end, pred)
            if k is None:
                return None
            t[name] = ev[k][0]
            # A daemon already running when the hop began shows up at once;
            # the next step searches from the same event, not after it.
            j = k if name.endswith("run") or name.endswith("run2") else k + 1
        return t


def main(argv):
    p = argparse.ArgumentParser(description="a ping's round trip through a tunnel, by segment")
    p.add_argument("trace")
    p.add_argument("--a", required=True)
    p.add_argument("--b", required=True)
    p.add_argument("--dev-a", required=True)
    p.add_argument("--dev-b", required=True)
    p.add_argument("--under", required=True)
    p.add_argument("--label", default="")
    args = p.parse_args(argv)
    ev = load(args.trace)
    if not ev:
        sys.exit(f"error: no events in {args.trace}")
    chain = Chain(ev, args)
    a, b = chain.a, chain.b
    starts = [i for i, e in enumerate(ev)
              if e[2] == "ping" and chain.net("net:net_dev_xmit", args.dev_a)(e)]
    segs = {k: [] for k in ["A out", "  A wake", "B in", "  B wake", "B's stack answers",
                            "B out", "A in", "  A wake ", "to ping", "total"]}
    calls_a, calls_b, skipped, cross, wakes = [], [], 0, 0, 0
    for n, i in enumerate(starts):
        end = starts[n + 1] if n + 1 < len(starts) else len(ev)
        t = chain.follow(i, end)
        if t is None:
            skipped += 1
            continue
        us = lambda x, y: (t[y] - t[x]) * 1e6  # noqa: E731
        segs["A out"].append(us("t0", "t1"))
        segs["  A wake"].append(us("t0", "a_run"))
        segs["B in"].append(us("t1", "t2"))
        segs["  B wake"].append(us("t1", "b_run"))
        segs["B's stack answers"].append(us("t2", "t3"))
        segs["B out"].append(us("t3", "t4"))
        segs["A in"].append(us("t4", "t5"))
        segs["  A wake "].append(us("t4", "a_run2"))
        segs["to ping"].append(us("t5", "t6"))
        segs["total"].append(us("t0", "t6"))
        ca = cb = 0
        for e in ev[i:end]:
            if e[0] > t["t6"]:
                break
            if e[4] == "raw_syscalls:sys_enter":
                ca += e[1] in a
                cb += e[1] in b
            elif e[4] == "sched:sched_wakeup":
                m = WAKE.search(e[5])
                if m and (int(m[2]) in a | b or m[1] == "ping"):
                    wakes += 1
                    # Woken on another CPU: the wake-up is done there, by
                    # its idle task once an interrupt brought it out of
                    # its sleep, or named another target.
                    cross += e[2].startswith("swapper") or int(m[3]) != e[3]
        calls_a.append(ca)
        calls_b.append(cb)
    done = len(segs["total"])
    if done == 0:
        sys.exit(f"error: no complete round trip among {len(starts)} pings in {args.trace}")
    title = f"{args.label}: " if args.label else ""
    print(f"{title}{done} round trips followed ({skipped} skipped); microseconds, "
          "median [10th-90th percentile]")
    for k, xs in segs.items():
        print(f"  {k:<20} {percentile(xs, 0.5):7.1f} [{percentile(xs, 0.1):.1f}-{percentile(xs, 0.9):.1f}]")
    if any(calls_a) or any(calls_b):
        print(f"  system calls per ping: site A {percentile(calls_a, 0.5):.0f}, "
              f"site B {percentile(calls_b, 0.5):.0f} (medians)")
    else:
        print("  system calls per ping: not recorded")
    if wakes:
        print(f"  wake-ups of a daemon or ping on another CPU than the waker's: "
              f"{cross} of {wakes}")


if __name__ == "__main__":
    main(sys.argv[1:])
