"""cycles: a CPython workload for pausewatch's rule-engine suite.

Builds reference cycles (objects that only the cyclic garbage collector can
free) as fast as it can, with low collection thresholds, so that
generational collections run often and take a large share of wall time.
Expected: throughput profile, gc_overhead finding.

Usage: python3 cycles.py [--duration SECS] [--threshold N] [--live N]
Prints "ready" once started and "done <cycles>" at the end.
"""

import argparse
import gc
import sys
import time


class Node:
    __slots__ = ("peer", "payload", "__weakref__")

    def __init__(self):
        self.peer = None
        self.payload = [0] * 8


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--duration", type=float, default=30.0)
    p.add_argument("--threshold", type=int, default=200,
                   help="gc threshold of generation 0 (CPython's default is 700)")
    p.add_argument("--live", type=int, default=200_000,
                   help="long-lived objects every full collection has to traverse")
    a = p.parse_args()
    if a.duration <= 0 or a.threshold < 1 or a.live < 0:
        print("cycles: --duration, --threshold must be positive, --live >= 0", file=sys.stderr)
        sys.exit(2)

    gc.set_threshold(a.threshold, 5, 5)
    live = [Node() for _ in range(a.live)]
    print("ready", flush=True)
    made = 0
    stop = time.monotonic() + a.duration
    while time.monotonic() < stop:
        for _ in range(1000):
            x, y = Node(), Node()
            x.peer, y.peer = y, x
        made += 1000
    print(f"done {made} (live {len(live)})", flush=True)


if __name__ == "__main__":
    main()
