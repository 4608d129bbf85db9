"""Collection workload for pausewatch's CPython end-to-end test.

Makes reference cycles (garbage only the cyclic collector can free) at a
steady rate, keeps some of them alive long enough to be promoted into the
older generations, and asks for explicit gen1 and gen2 collections now and
then, so that every generation is collected many times. It records its own
account of every collection with `gc.callbacks` (count and duration per
generation, the duration from the "start" to the "stop" callback) and
reports it, with its own run time and throughput, when done.

Protocol (stderr, see xtask/src/scripted.rs): prints
`pausewatch-workload: ready`, waits for a line on stdin, runs for SECONDS
(argv[1], default 3), prints `pausewatch-workload: done {json}` and waits
for stdin to close before exiting.

With a TITLE (argv[2]), it first renames itself with `setproctitle` (Debian's
python3-setproctitle), as servers such as gunicorn and celery do: that
changes /proc/PID/comm and /proc/PID/cmdline, which the tracer must not
take for the process's name.

The automatic collector is disabled outside the measured phase, and the
callback is registered only inside it, so that the script counts exactly
the collections that run while the tracer is attached and the test is
waiting for it; the interpreter's final collection at exit happens after
the tracer has detached.

The first-generation threshold is raised (THRESHOLD0) so that a young
collection takes a millisecond or more rather than ~15: the script's
callback timing includes the callbacks' own overhead and the uprobes'
(a few microseconds per collection), which must stay small next to the
collection for the durations to be comparable.
"""

import gc
import json
import sys
import time

PREFIX = "pausewatch-workload: "
THRESHOLD0 = 20000
THRESHOLD1 = 10
THRESHOLD2 = 10


class Cell:
    """A node of a reference cycle."""

    __slots__ = ("peer", "payload")

    def __init__(self, payload):
        self.peer = None
        self.payload = payload


def make_cycles(n):
    """n two-cell cycles, each also pointing at a small list."""
    out = []
    for i in range(n):
        a = Cell([i])
        b = Cell(a)
        a.peer = b
        out.append(a)
    return out


def say(text):
    sys.stderr.write(PREFIX + text + "\n")
    sys.stderr.flush()


def main():
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
    if len(sys.argv) > 2:
        import setproctitle

        setproctitle.setproctitle(sys.argv[2])
    gc.disable()
    gc.collect()
    gc.set_threshold(THRESHOLD0, THRESHOLD1, THRESHOLD2)
    say("ready")
    sys.stdin.readline()

    clock = time.perf_counter_ns
    counts = [0, 0, 0]
    durations_ns = [0, 0, 0]
    started = [0]

    def on_gc(phase, info):
        if phase == "start":
            started[0] = clock()
        else:
            g = info["generation"]
            counts[g] += 1
            durations_ns[g] += clock() - started[0]

    gc.callbacks.append(on_gc)
    gc.enable()
    t0 = clock()
    deadline = t0 + int(seconds * 1e9)
    rounds = 0
    survivors = []
    while clock() < deadline:
        make_cycles(1000)
        survivors.append(make_cycles(20))
        if len(survivors) > 600:
            del survivors[:300]
        rounds += 1
        if rounds % 100 == 0:
            gc.collect(1)
        if rounds % 250 == 0:
            gc.collect(2)
    gc.disable()
    gc.callbacks.remove(on_gc)
    elapsed_ns = clock() - t0

    say(
        "done "
        + json.dumps(
            {
                "counts": counts,
                "durations_ns": durations_ns,
                "elapsed_ns": elapsed_ns,
                "rounds": rounds,
                "rounds_per_second": rounds / (elapsed_ns / 1e9),
            }
        )
    )
    sys.stdin.read()


if __name__ == "__main__":
    main()
