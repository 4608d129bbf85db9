#!/usr/bin/env python3
"""bcc_pair.py: BCC's way of timing a begin/end USDT pair, for `cargo xtask
bench` (the same structure as BCC's ugc tool: USDT probes enabled through
the BCC USDT class, a start timestamp per thread in a hash, a log2
histogram of the deltas).

Usage: bcc_pair.py PID PROVIDER:BEGIN PROVIDER:END
Prints "armed" on stderr once the probes are attached, the histogram's
total count on stdout at SIGINT, then exits 0.
"""
import signal
import sys

from bcc import BPF, USDT

PROGRAM = r"""
#include <uapi/linux/ptrace.h>
BPF_HASH(start, u32, u64);
BPF_HISTOGRAM(dist);
int pair_begin(struct pt_regs *ctx) {
    u32 tid = bpf_get_current_pid_tgid();
    u64 ts = bpf_ktime_get_ns();
    start.update(&tid, &ts);
    return 0;
}
int pair_end(struct pt_regs *ctx) {
    u32 tid = bpf_get_current_pid_tgid();
    u64 *ts = start.lookup(&tid);
    if (ts == 0)
        return 0;
    dist.increment(bpf_log2l(bpf_ktime_get_ns() - *ts));
    start.delete(&tid);
    return 0;
}
"""


def main():
    if len(sys.argv) != 4:
        sys.exit("usage: bcc_pair.py PID PROVIDER:BEGIN PROVIDER:END")
    pid = int(sys.argv[1])
    usdt = USDT(pid=pid)
    usdt.enable_probe_or_bail(sys.argv[2].split(":")[1], "pair_begin")
    usdt.enable_probe_or_bail(sys.argv[3].split(":")[1], "pair_end")
    bpf = BPF(text=PROGRAM, usdt_contexts=[usdt])
    stop = []
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    print("armed", file=sys.stderr, flush=True)
    while not stop:
        signal.pause()
    total = sum(v.value for v in bpf["dist"].values())
    print(total, flush=True)


if __name__ == "__main__":
    main()
