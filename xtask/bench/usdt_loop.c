/*
 * usdt_loop.c: the per-event cost benchmark of `cargo xtask bench`.
 *
 * Built twice by xtask/src/bench/usdt.rs with `cc` at bench time:
 *
 *   cc -O2 -shared -fPIC -DPW_PROBE_LIBRARY -o DIR/libjvm.so usdt_loop.c
 *   cc -O2 -o DIR/usdt_loop usdt_loop.c -LDIR -ljvm -Wl,-rpath,DIR
 *
 * The library carries SystemTap USDT notes with HotSpot's provider and
 * probe names and argument shapes (hs_private:safepoint__begin/end,
 * hotspot:vmops__begin/end(name, len, mode), hotspot:gc__begin(full)/end)
 * and is named libjvm.so, so `agent run --pid` detects the loop process as a
 * HotSpot target and attaches its real programs through its normal path:
 * nothing in the agent knows about this benchmark. A "pair" is one
 * safepoint__begin followed by one safepoint__end on the same thread, the
 * shortest complete pause the agent records; the other probes exist only so
 * that discovery finds every probe it requires, and never fire.
 *
 * Protocol: prints "ready" once loaded, then reads commands from stdin, one
 * per line, and answers each with one line:
 *   "N"       fire N pairs back to back; answer "<ns per pair> <N>"
 *   "N RATE"  fire N pairs paced at RATE pairs/s (busy-waiting between
 *             pairs); answer "<ns per pair> <N> <achieved pairs/s>"
 * Exits 0 at end of input, 2 on a malformed command.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef PW_PROBE_LIBRARY
#include <sys/sdt.h>

static const char vmop_name[] = "BenchOperation";

/* noinline: one call per pair, as in HotSpot where the probes sit inside
 * SafepointSynchronize::begin/end. */
__attribute__((noinline)) void pw_pair(void)
{
    DTRACE_PROBE(hs_private, safepoint__begin);
    __asm__ volatile("" ::: "memory");
    DTRACE_PROBE(hs_private, safepoint__end);
}

/* Never called: gives discovery the remaining HotSpot probes with their
 * real argument shapes. */
__attribute__((noinline)) void pw_unused(int full)
{
    DTRACE_PROBE3(hotspot, vmops__begin, vmop_name, sizeof vmop_name - 1, 0);
    DTRACE_PROBE3(hotspot, vmops__end, vmop_name, sizeof vmop_name - 1, 0);
    DTRACE_PROBE1(hotspot, gc__begin, full);
    DTRACE_PROBE(hotspot, gc__end);
}
#else
void pw_pair(void);

static unsigned long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec;
}

int main(void)
{
    char line[128];
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("ready\n");
    while (fgets(line, sizeof line, stdin)) {
        unsigned long long n = 0, rate = 0;
        int got = sscanf(line, "%llu %llu", &n, &rate);
        if (got < 1 || n == 0) {
            fprintf(stderr, "usdt_loop: bad command %s", line);
            return 2;
        }
        unsigned long long t0 = now_ns();
        if (got == 1 || rate == 0) {
            for (unsigned long long i = 0; i < n; i++)
                pw_pair();
            unsigned long long took = now_ns() - t0;
            printf("%.1f %llu\n", (double)took / (double)n, n);
        } else {
            /* Pace against the absolute schedule so short stalls catch up
             * and the average rate is the one asked for. */
            double period = 1e9 / (double)rate;
            unsigned long long busy = 0;
            for (unsigned long long i = 0; i < n; i++) {
                unsigned long long due = t0 + (unsigned long long)(period * (double)i);
                while (now_ns() < due) {
                }
                unsigned long long s = now_ns();
                pw_pair();
                busy += now_ns() - s;
            }
            unsigned long long took = now_ns() - t0;
            printf("%.1f %llu %.0f\n", (double)busy / (double)n, n, (double)n * 1e9 / (double)took);
        }
    }
    return 0;
}
#endif
