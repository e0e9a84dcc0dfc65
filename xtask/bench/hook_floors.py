#!/usr/bin/env python3
"""The cost of each futex hook on its own, for issue 17's 1% goal (BENCHMARKS.md,
"Measurements behind the design": "What each futex hook costs a lock-bound workload").

One `lockbench --control` process (4 threads, one mutex, 1 us inside, 0.5 us outside);
per round, each watch takes a 3 s window in turn (starting watch rotating): nothing,
`tracer floor` (empty programs on `sched_switch` and `sys_exit`), `tracer floor
--no-sys-exit` (an empty program on `sched_switch` only), `tracer attach`, `tracer serve`
(its default hooks: `sched_switch` only, wait ends timed at switch-in) and `tracer serve
--brief-waits` (`sys_exit` too, as `attach`). An
observer attaches and sits still for 1 s before its window opens, and is stopped after
it. Prints, per watch, the median over rounds of window throughput / the untraced
window's of the same round, with the distribution-free 95% interval of that median
(order statistics; none below 6 rounds).

Usage (root): hook_floors.py TRACER LOCKBENCH [ROUNDS]
  gcc -O2 -pthread -o /tmp/lockbench xtask/bench/lockbench.c
  sudo python3 xtask/bench/hook_floors.py target/release/tracer /tmp/lockbench 15

With SERVES set (comma-separated commands, each a tracer binary or a script that runs
one with extra arguments: `exec /path/tracer "$@" --max-sleeps-per-second 500`), the
watches are instead: nothing, `TRACER floor --no-sys-exit`, and `serve` under each of
them, to compare builds or settings of the serve in one run:
  SERVES=/tmp/old/tracer,target/release/tracer sudo -E python3 \
      xtask/bench/hook_floors.py target/release/tracer /tmp/lockbench 30

With GO_OUT_US set, the workload is `go_lockbench` instead (LOCKBENCH its path), with 4
goroutines and that many µs of work outside the lock (bench (i)'s Go workload: 20):
  GO_OUT_US=20 SERVES=/tmp/old/tracer,target/release/tracer sudo -E python3 \
      xtask/bench/hook_floors.py target/release/tracer target/bench/go_lockbench 30
"""
import math
import os
import statistics
import subprocess
import sys
import time


def median_interval(values):
    """The 95% interval of the median of `values` from order statistics."""
    n = len(values)
    if n < 6:
        return None
    xs = sorted(values)
    # The largest k with P(Binomial(n, 1/2) < k) <= 2.5%.
    k, total = 0, 0.0
    while True:
        p = math.comb(n, k) / 2**n
        if total + p > 0.025:
            break
        total += p
        k += 1
    return xs[k - 1] if k > 0 else xs[0], xs[n - k] if k > 0 else xs[-1]


# lockbench's lock-bound shape: 4 threads, one mutex, 1 us inside, 0.5 us outside.
LOCKBENCH_ARGS = ["--threads", "4", "--cs-us", "1", "--out-us", "0.5", "--control"]


def start_workload(args):
    """Starts a workload that speaks lockbench's control protocol (`--control`): its pid,
    then a line of counts for each line it reads. Returns the process, its pid, and
    `mark()`, which asks for the counts: (operations so far, its clock in ns)."""
    bench = subprocess.Popen(
        args,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
    )
    pid = bench.stdout.readline().split("pid=")[1].strip()

    def mark():
        bench.stdin.write("\n")
        bench.stdin.flush()
        fields = dict(f.split("=") for f in bench.stdout.readline().split()[1:])
        return int(fields["ops"]), int(fields["t_ns"])

    return bench, pid, mark


def main():
    tracer, lockbench = sys.argv[1], sys.argv[2]
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 15
    # GO_OUT_US set: LOCKBENCH is `go_lockbench` (target/bench/go_lockbench, built by
    # `cargo xtask bench`), 4 goroutines with that much work outside the lock, as in
    # bench (i)'s Go workload (GO_OUT_US=20).
    go_out_us = os.environ.get("GO_OUT_US")
    if go_out_us:
        args = [lockbench, "-goroutines", "4", "-out-us", go_out_us]
    else:
        args = [lockbench, *LOCKBENCH_ARGS]
    bench, pid, mark = start_workload(args)
    long = ["--pid", pid, "--duration", "30"]
    watches = {
        "untraced": None,
        "floor: sched_switch + sys_exit": [tracer, "floor", *long],
        "floor: sched_switch only": [tracer, "floor", *long, "--no-sys-exit"],
        "tracer attach": [tracer, "attach", *long],
        "tracer serve (ends at switch-in)": [
            tracer, "serve", "--pid", pid, "--listen", "127.0.0.1:19471"],
        "tracer serve --brief-waits": [
            tracer, "serve", "--pid", pid, "--listen", "127.0.0.1:19472", "--brief-waits"],
    }
    serves = [c for c in os.environ.get("SERVES", "").split(",") if c]
    if serves:
        watches = {
            "untraced": None,
            "floor: sched_switch only": [tracer, "floor", *long, "--no-sys-exit"],
        }
        for k, command in enumerate(serves):
            watches[f"serve: {command}"] = [
                command, "serve", "--pid", pid, "--listen", f"127.0.0.1:{19480 + k}"]
    names = list(watches)
    ops = {name: [] for name in names}
    time.sleep(1)
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            observer = None
            if watches[name]:
                observer = subprocess.Popen(
                    watches[name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
                time.sleep(1.0)
            (ops0, t0), (ops1, t1) = mark(), (time.sleep(3), mark())[1]
            if observer:
                observer.send_signal(2)
                observer.wait()
            time.sleep(0.3)
            ops[name].append((ops1 - ops0) / ((t1 - t0) / 1e9))
    bench.stdin.close()
    bench.wait()
    print(f"{rounds} rounds, 3 s windows")
    for name in names:
        ratios = [x / u for x, u in zip(ops[name], ops["untraced"])]
        interval = median_interval(ratios)
        shown = f"{interval[0]:.3f} - {interval[1]:.3f}" if interval else "-"
        print(
            f"{name}: {statistics.median(ops[name]) / 1e3:.0f} k ops/s, paired ratio "
            f"{statistics.median(ratios):.3f} (95% interval {shown})"
        )


if __name__ == "__main__":
    main()
