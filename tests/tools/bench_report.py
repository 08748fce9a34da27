#!/usr/bin/env python3
"""Helpers for scripts/bench.sh: read iperf3 JSON, render the comparison table.

Subcommands (all print to stdout, exit 1 with one `error:` line on bad input):

  iperf FILE tcp       -> receiver throughput in Mbit/s (sum over streams)
  iperf FILE udp-pps   -> datagrams per second the server RECEIVED
  iperf FILE udp-loss  -> loss in percent as seen by the server
  ping FILE            -> average RTT in ms from `ping -q` output
  status-pid FILE      -> the "pid" key of `bridge-ctl status --json`, if any
  idle BEFORE AFTER    -> percent of all CPUs idle between two /proc/stat
                          "cpu" lines (idle + iowait over the total)
  report MD_OUT TITLE... -- RESULTS...
                       -> terminal table on stdout, markdown table to MD_OUT;
                          one RESULTS file per run: with several, each cell
                          is "median (min–max)" and each ratio the median of
                          the per-run ratios; then tapbridge's RTT over the
                          best userspace peer's, run by run
  runs RESULTS MD_OUT TITLE...
                       -> for scripts/bench_workers.sh: RESULTS has lines
                          "SETTING<TAB>TEST<TAB>RUN<TAB>VALUE" for exactly two
                          settings (the first one is the baseline); one row per
                          test with each setting's median [min-max] and the
                          ratio of the medians, second over first, and the
                          per-run ratios

RESULTS is a text file of lines "TUNNEL<TAB>METRIC<TAB>VALUE" (VALUE may be a
word such as "n/a" or "failed"). The table has one row per metric and one
column per tunnel (tapbridge-tcp is tapbridge over its TCP transport), plus
tapbridge's ratio to each of VpnCloud, boringtun + VXLAN, OpenVPN and kernel
VXLAN, and tapbridge-tcp/tapbridge (what the TCP fallback costs). A cell with
a number in only some runs is the spread of those, marked "*".
"""

import json
import re
import sys

TUNNELS = ["tapbridge", "tapbridge-tcp", "vpncloud", "boringtun-vxlan", "openvpn", "vxlan"]
# The tunnels run by a userspace process, whose best RTT tapbridge is held to.
USERSPACE = ["vpncloud", "boringtun-vxlan", "openvpn"]
# tapbridge's ratio to each of these is a column.
RATIO_TO = ["vpncloud", "boringtun-vxlan", "openvpn", "vxlan"]

# (key, label, unit, higher_is_better, decimals)
METRICS = [
    ("mtu", "tunnel interface MTU", "bytes", None, 0),
    ("tcp1", "TCP, 1 stream", "Mbit/s", True, 0),
    ("tcp4", "TCP, 4 streams", "Mbit/s", True, 0),
    ("udp_pps", "UDP 64 B, received", "packets/s", True, 0),
    ("udp_loss", "UDP 64 B, loss", "%", False, 1),
    ("rtt", "ping RTT (avg of 200, idle tunnel)", "ms", False, 3),
    ("cpu_tcp1", "tunnel CPU, TCP 1 stream", "CPU s", False, 2),
    ("cpu_udp", "tunnel CPU, UDP 64 B", "CPU s", False, 2),
    ("idle_tcp1", "machine idle, TCP 1 stream", "% of all CPUs", None, 1),
]


def fail(msg):
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(1)


def load_iperf(path):
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        fail(f"cannot read iperf3 JSON {path}: {e}")
    if "error" in data:
        fail(f"iperf3 reported: {data['error']}")
    return data


def iperf(path, kind):
    data = load_iperf(path)
    try:
        rx = data["end"]["sum_received"]
        if kind == "tcp":
            return f"{rx['bits_per_second'] / 1e6:.1f}"
        blksize = data["start"]["test_start"]["blksize"]
        seconds = rx["seconds"]
        if kind == "udp-pps":
            # bytes / datagram size = datagrams the server actually received.
            return f"{rx['bytes'] / blksize / seconds:.0f}" if seconds > 0 else "0"
        if kind == "udp-loss":
            return f"{rx['lost_percent']:.2f}"
    except (KeyError, TypeError, ZeroDivisionError) as e:
        fail(f"unexpected iperf3 JSON in {path}: missing {e}")
    fail(f"unknown iperf kind {kind}")
    return None


def ping(path):
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        fail(f"cannot read ping output {path}: {e}")
    m = re.search(r"= [\d.]+/([\d.]+)/[\d.]+/[\d.]+ ms", text)
    if not m:
        fail(f"no RTT summary in ping output {path}")
    return m.group(1)


def status_pid(path):
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return ""
    pid = data.get("pid") if isinstance(data, dict) else None
    return str(pid) if isinstance(pid, int) and pid > 0 else ""


def idle(before, after):
    try:
        b = [int(x) for x in before.split()[1:]]
        a = [int(x) for x in after.split()[1:]]
    except ValueError:
        fail(f"not a /proc/stat cpu line: {before!r} / {after!r}")
    if len(a) < 5 or len(a) != len(b):
        fail("the /proc/stat cpu lines differ in length")
    d = [y - x for x, y in zip(b, a)]
    # Fields: user nice system idle iowait irq softirq steal guest guest_nice;
    # guest time is already counted in user and nice.
    total = sum(d[:8])
    if total <= 0:
        fail("no CPU time passed between the two /proc/stat lines")
    return f"{100 * (d[3] + d[4]) / total:.1f}"


def as_float(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def fmt(v, decimals, grouping=True):
    f = as_float(v)
    if f is None:
        return v if v else "-"
    return f"{f:,.{decimals}f}" if grouping else f"{f:.{decimals}f}"


def ratio(a, b):
    fa, fb = as_float(a), as_float(b)
    if fa is None or fb is None or fb == 0:
        return "-"
    return f"{fa / fb:.2f}x"


def read_results(path):
    res = {}
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                parts = line.rstrip("\n").split("\t")
                if len(parts) == 3:
                    res[(parts[0], parts[1])] = parts[2]
    except OSError as e:
        fail(f"cannot read results {path}: {e}")
    return res


def spread(xs, dec, grouping=True):
    """One value as it is; several as "median (min–max)"."""
    if len(xs) == 1:
        return fmt(xs[0], dec, grouping)
    m = median(xs)
    return f"{fmt(m, dec, grouping)} ({fmt(min(xs), dec, grouping)}–{fmt(max(xs), dec, grouping)})"


def best_userspace(run, key, better):
    """The best value among the userspace peers in one run (None if none has one)."""
    vals = [as_float(run.get((t, key))) for t in USERSPACE]
    vals = [v for v in vals if v is not None and v > 0]
    if not vals:
        return None
    return max(vals) if better else min(vals)


def report(md_path, title, paths):
    runs = [read_results(p) for p in paths]
    header = ["metric", "unit"] + TUNNELS + [f"tapbridge/{t}" for t in RATIO_TO] + ["tcp/udp"]
    rows = []
    for key, label, unit, better, dec in METRICS:
        cells = []
        for t in TUNNELS:
            nums = [as_float(r.get((t, key))) for r in runs]
            nums = [x for x in nums if x is not None]
            if nums and len(nums) == len(runs):
                cells.append(spread(nums, dec, key != "mtu"))
            else:
                words = [r.get((t, key), "") for r in runs]
                cells.append(next((w for w in words if w and as_float(w) is None), "-")
                             if not nums else spread(nums, dec, key != "mtu") + "*")
        ratios = []
        if better is not None:
            for num, den in [("tapbridge", t) for t in RATIO_TO] + [("tapbridge-tcp", "tapbridge")]:
                rs = [as_float(ratio(r.get((num, key)), r.get((den, key))).rstrip("x"))
                      for r in runs]
                rs = [x for x in rs if x is not None]
                ratios.append(spread(rs, 2, False).replace(" (", "x (", 1)
                              if len(rs) > 1 else f"{rs[0]:.2f}x" if rs else "-")
        else:
            ratios = [""] * (len(RATIO_TO) + 1)
        hint = "" if better is None else (" (higher is better)" if better else " (lower is better)")
        rows.append([label + hint, unit] + cells + ratios)

    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    print("  ".join(h.ljust(widths[i]) for i, h in enumerate(header)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        cells = [str(c).ljust(widths[i]) if i < 2 else str(c).rjust(widths[i]) for i, c in enumerate(r)]
        print("  ".join(cells))

    # The latency goal: tapbridge's RTT against the best userspace peer, each run.
    per_run = []
    for n, r in enumerate(runs, 1):
        best = best_userspace(r, "rtt", False)
        tb = as_float(r.get(("tapbridge", "rtt")))
        if best is not None and tb is not None:
            who = min((t for t in USERSPACE if as_float(r.get((t, "rtt"))) is not None),
                      key=lambda t: as_float(r.get((t, "rtt"))))
            per_run.append(f"run {n}: {tb:.3f} / {best:.3f} ms ({who}) = {tb / best:.2f}x")
    summary = ""
    if per_run:
        summary = "RTT, tapbridge over the best userspace peer: " + "; ".join(per_run)
        print()
        print(summary)

    md = [f"{title}", "", "| " + " | ".join(header) + " |", "|" + "|".join(
        [":--", ":--"] + ["--:"] * (len(header) - 2)) + "|"]
    for r in rows:
        md.append("| " + " | ".join(str(c) for c in r) + " |")
    if summary:
        md += ["", summary]
    try:
        with open(md_path, "w", encoding="utf-8") as f:
            f.write("\n".join(md) + "\n")
    except OSError as e:
        fail(f"cannot write {md_path}: {e}")


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def runs(results_path, md_path, title):
    settings, tests, vals = [], [], {}
    try:
        with open(results_path, encoding="utf-8") as f:
            for line in f:
                parts = line.rstrip("\n").split("\t")
                if len(parts) != 4:
                    continue
                setting, test, run, value = parts
                v = as_float(value)
                if v is None:
                    continue
                if setting not in settings:
                    settings.append(setting)
                if test not in tests:
                    tests.append(test)
                vals.setdefault((setting, test), {})[run] = v
    except OSError as e:
        fail(f"cannot read results {results_path}: {e}")
    if len(settings) != 2:
        fail(f"expected results for two settings, found {settings}")
    base, other = settings
    header = ["test", base, other, f"{other} / {base}", "per run"]
    rows = []
    for t in tests:
        a, b = vals.get((base, t), {}), vals.get((other, t), {})
        cells = [t]
        for d in (a, b):
            if d:
                xs = list(d.values())
                cells.append(f"{median(xs):,.0f} [{min(xs):,.0f}–{max(xs):,.0f}]"
                             if median(xs) >= 100 else
                             f"{median(xs):.2f} [{min(xs):.2f}–{max(xs):.2f}]")
            else:
                cells.append("-")
        if a and b:
            cells.append(ratio(median(list(b.values())), median(list(a.values()))))
            cells.append(", ".join(ratio(b[r], a[r]) for r in sorted(a) if r in b))
        else:
            cells += ["-", "-"]
        rows.append(cells)
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    print("  ".join(h.ljust(widths[i]) for i, h in enumerate(header)))
    for r in rows:
        print("  ".join(str(c).ljust(widths[i]) for i, c in enumerate(r)))
    md = [title, "", "| " + " | ".join(header) + " |",
          "|:--|" + "--:|" * (len(header) - 1)]
    md += ["| " + " | ".join(r) + " |" for r in rows]
    try:
        with open(md_path, "w", encoding="utf-8") as f:
            f.write("\n".join(md) + "\n")
    except OSError as e:
        fail(f"cannot write {md_path}: {e}")


def main(argv):
    if len(argv) >= 3 and argv[0] == "iperf":
        print(iperf(argv[1], argv[2]))
    elif len(argv) == 2 and argv[0] == "ping":
        print(ping(argv[1]))
    elif len(argv) == 2 and argv[0] == "status-pid":
        print(status_pid(argv[1]))
    elif len(argv) == 3 and argv[0] == "idle":
        print(idle(argv[1], argv[2]))
    elif len(argv) >= 4 and argv[0] == "report" and "--" in argv:
        k = argv.index("--")
        if k + 1 == len(argv):
            fail("report needs at least one results file after --")
        report(argv[1], "\n".join(argv[2:k]), argv[k + 1:])
    elif len(argv) >= 3 and argv[0] == "runs":
        runs(argv[1], argv[2], "\n".join(argv[3:]))
    else:
        fail("usage: bench_report.py iperf FILE tcp|udp-pps|udp-loss | ping FILE | "
             "status-pid FILE | idle BEFORE AFTER | report MD_OUT [TITLE...] -- RESULTS... | "
             "runs RESULTS MD_OUT [TITLE...]")


if __name__ == "__main__":
    main(sys.argv[1:])
