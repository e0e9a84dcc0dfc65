#!/usr/bin/env python3
"""Does `tracer serve` cost a lock-bound workload more in its first seconds than later?
(BENCHMARKS.md, "The draw from the thread's own switch count, and the serve's first
seconds".)

One `lockbench --control` process (4 threads, one mutex, 1 us inside, 0.5 us outside, as
in `hook_floors.py`); per round, untraced and `tracer serve --pid` take turns (the order
alternating), each measured 1 s after it starts in three 3 s segments. Prints, per
segment, the median over rounds of the serve's throughput / the untraced one's in the
same segment, with the distribution-free 95% interval of that median, and the same for
the first segment's ratio less the mean of the later two (per round).

Usage (root): serve_segments.py TRACER LOCKBENCH [ROUNDS]
  gcc -O2 -pthread -o /tmp/lockbench xtask/bench/lockbench.c
  sudo python3 xtask/bench/serve_segments.py target/release/tracer /tmp/lockbench 30
"""
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hook_floors import LOCKBENCH_ARGS, median_interval, start_workload  # noqa: E402

SEGMENT_S = 3
SEGMENTS = 3


def shown(values):
    interval = median_interval(values)
    span = f"{interval[0]:.3f} - {interval[1]:.3f}" if interval else "-"
    return f"{statistics.median(values):.4f} (95% interval {span})"


def main():
    tracer, lockbench = sys.argv[1], sys.argv[2]
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 30
    bench, pid, mark = start_workload([lockbench, *LOCKBENCH_ARGS])
    rates = {"untraced": [], "serve": []}
    time.sleep(1)
    for r in range(rounds):
        for name in ["untraced", "serve"] if r % 2 == 0 else ["serve", "untraced"]:
            serve = None
            if name == "serve":
                serve = subprocess.Popen(
                    [tracer, "serve", "--pid", pid, "--listen", "127.0.0.1:19490"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )
            time.sleep(1.0)
            marks = [mark()]
            for _ in range(SEGMENTS):
                time.sleep(SEGMENT_S)
                marks.append(mark())
            if serve:
                serve.send_signal(2)
                serve.wait()
            time.sleep(0.3)
            rates[name].append(
                [(b[0] - a[0]) / ((b[1] - a[1]) / 1e9) for a, b in zip(marks, marks[1:])]
            )
    bench.stdin.close()
    bench.wait()
    ratios = [[s / u for s, u in zip(sr, ur)] for sr, ur in zip(rates["serve"], rates["untraced"])]
    print(f"{rounds} rounds, {SEGMENTS} segments of {SEGMENT_S} s, each 1 s after the start")
    for k in range(SEGMENTS):
        start = 1 + k * SEGMENT_S
        print(f"{start} - {start + SEGMENT_S} s after the start: {shown([r[k] for r in ratios])}")
    first_less_later = [r[0] - statistics.mean(r[1:]) for r in ratios]
    print(f"first segment less the later ones: {shown(first_less_later)}")


if __name__ == "__main__":
    main()
