// GcHeavy: the bundled HotSpot workload for pausewatch's demo, end-to-end
// tests and benchmarks. It allocates at a paced rate so that G1 runs regular
// young collections (a few ms each), keeps a churning live set so objects get
// promoted and the occasional concurrent cycle (Remark/Cleanup pauses) runs,
// and can add other safepoint VM operations on a timer.
//
// Launch it through xtask's `workloads::JavaWorkload`, which picks the heap
// and GC flags (by default -Xms256m -Xmx256m -Xmn16m -XX:+UseG1GC) and the
// -Xlog options. Runs on JDK 11 and later, either compiled (javac --release
// 11) or as a single source file (`java GcHeavy.java ...`).
//
// Flags (all optional):
//   --duration-secs S        stop after S seconds of heavy phase (default 10;
//                            0 = no time limit, stop on stop file / stdin EOF)
//   --stop-file PATH         stop as soon as PATH exists (polled every 10 ms)
//   --stop-on-stdin-eof      stop when standard input reaches EOF
//   --gate-file PATH         after "ready", wait until PATH exists before the
//                            heavy phase (so a tracer can attach first)
//   --gate-timeout-secs S    give up waiting on the gate after S seconds and
//                            exit 3 (default 120; 0 = wait forever)
//   --alloc-mb-per-sec N     total allocation rate over all workers (default 200)
//   --threads N              allocating worker threads (default 1)
//   --live-mb N              size of the churning live set (default 24)
//   --system-gc-ms N         call System.gc() (a full GC) every N ms (default off)
//   --stack-traces-ms N      call Thread.getAllStackTraces() (a safepoint VM
//                            operation) every N ms (default off)
//   --spin-threads N         CPU-bound threads that run counted loops of pure
//                            arithmetic, no allocation (default 0). A counted
//                            int loop is the classic time-to-safepoint problem:
//                            with -XX:-UseCountedLoopSafepoints, C2 compiles it
//                            without a safepoint poll inside, so a safepoint
//                            waits for the running loop to finish.
//   --spin-loop-us N         target length of one such loop in microseconds
//                            (default 500); each thread adjusts the trip count
//                            to it after every loop, outside the loop
//   --slowpoke-loop-us N     one more such thread, named "slowpoke", whose
//                            loops take N us (default off): with loops much
//                            longer than the other threads' work between
//                            polls, it is the thread that reaches almost
//                            every safepoint last (the straggler test)
//   --seed N                 random seed (default 42)
//
// Protocol on stdout, one line each, flushed: "ready" once started (before
// the gate), "started" when the heavy phase begins, "allocated <bytes>"
// (what the allocating workers allocated in the heavy phase, by
// com.sun.management.ThreadMXBean.getThreadAllocatedBytes, summed over
// them; -1 when the JVM cannot tell) and "done <n_ops>" at the end, where
// n_ops counts allocations plus timer-driven operations plus spin loops.
// Exit 0.
// Errors go to stderr with exit 2 (bad arguments) or 3 (gate timeout).

import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.SplittableRandom;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.LockSupport;

public final class GcHeavy {
    static volatile boolean stop = false;
    static final AtomicLong timerOps = new AtomicLong();

    static long durationSecs = 10;
    static Path stopFile = null;
    static boolean stopOnStdinEof = false;
    static Path gateFile = null;
    static long gateTimeoutSecs = 120;
    static long allocMbPerSec = 200;
    static int threads = 1;
    static long liveMb = 24;
    static long systemGcMs = 0;
    static long stackTracesMs = 0;
    static int spinThreads = 0;
    static long spinLoopUs = 500;
    static long slowpokeLoopUs = 0;
    static long seed = 42;

    public static void main(String[] args) throws Exception {
        parseArgs(args);

        if (stopOnStdinEof) {
            Thread t = new Thread(GcHeavy::watchStdin, "gcheavy-stdin");
            t.setDaemon(true);
            t.start();
        }

        say("ready");

        if (gateFile != null) {
            long deadline = gateTimeoutSecs > 0 ? System.nanoTime() + gateTimeoutSecs * 1_000_000_000L : Long.MAX_VALUE;
            while (!Files.exists(gateFile)) {
                if (stop || stopRequestedByFile()) {
                    // Asked to stop before the gate opened: finish cleanly.
                    say("done 0");
                    return;
                }
                if (System.nanoTime() - deadline > 0) {
                    System.err.println("GcHeavy: gate file " + gateFile + " did not appear within "
                            + gateTimeoutSecs + " s");
                    System.exit(3);
                }
                LockSupport.parkNanos(2_000_000L);
            }
        }

        Worker[] workers = new Worker[threads];
        long perThreadBytesPerSec = allocMbPerSec * 1024L * 1024L / threads;
        long perThreadLiveSlots = Math.max(1, liveMb * 1024L * 1024L / threads / LIVE_OBJ_BYTES);
        for (int i = 0; i < threads; i++) {
            workers[i] = new Worker(perThreadBytesPerSec, (int) perThreadLiveSlots, seed + 7919L * i);
        }
        Spinner[] spinners = new Spinner[spinThreads + (slowpokeLoopUs > 0 ? 1 : 0)];
        for (int i = 0; i < spinThreads; i++) {
            spinners[i] = new Spinner(spinLoopUs * 1000L, seed + 104729L * (i + 1), "gcheavy-spin-" + i);
        }
        if (slowpokeLoopUs > 0) {
            spinners[spinThreads] = new Spinner(slowpokeLoopUs * 1000L, seed + 1299709L, "slowpoke");
        }
        Thread[] timers = new Thread[2];
        if (systemGcMs > 0) {
            timers[0] = timer("gcheavy-system-gc", systemGcMs, System::gc);
        }
        if (stackTracesMs > 0) {
            timers[1] = timer("gcheavy-stack-traces", stackTracesMs, () -> {
                if (Thread.getAllStackTraces().isEmpty()) {
                    throw new IllegalStateException("no threads?");
                }
            });
        }

        say("started");
        for (Worker w : workers) {
            w.thread.start();
        }
        for (Spinner sp : spinners) {
            sp.thread.start();
        }
        for (Thread t : timers) {
            if (t != null) {
                t.start();
            }
        }

        long endAt = durationSecs > 0 ? System.nanoTime() + durationSecs * 1_000_000_000L : Long.MAX_VALUE;
        while (!stop) {
            if (System.nanoTime() - endAt >= 0 || stopRequestedByFile()) {
                stop = true;
                break;
            }
            LockSupport.parkNanos(10_000_000L);
        }

        for (Worker w : workers) {
            w.thread.join();
        }
        for (Spinner sp : spinners) {
            sp.thread.join();
        }
        for (Thread t : timers) {
            if (t != null) {
                t.join();
            }
        }
        long ops = timerOps.get();
        long allocatedBytes = 0;
        for (Worker w : workers) {
            ops += w.ops;
            allocatedBytes = w.allocatedBytes < 0 || allocatedBytes < 0 ? -1 : allocatedBytes + w.allocatedBytes;
        }
        say("allocated " + allocatedBytes);
        for (Spinner sp : spinners) {
            ops += sp.loops;
        }
        say("done " + ops);
    }

    static void say(String line) {
        System.out.println(line);
        System.out.flush();
    }

    static boolean stopRequestedByFile() {
        return stopFile != null && Files.exists(stopFile);
    }

    static void watchStdin() {
        try {
            InputStream in = System.in;
            byte[] buf = new byte[256];
            while (in.read(buf) >= 0) {
                // Discard input; only EOF matters.
            }
        } catch (Exception e) {
            // Treat a broken stdin like EOF.
        }
        stop = true;
    }

    static Thread timer(String name, long periodMs, Runnable action) {
        Thread t = new Thread(() -> {
            long period = periodMs * 1_000_000L;
            long next = System.nanoTime() + period;
            while (!stop) {
                long wait = next - System.nanoTime();
                if (wait > 0) {
                    LockSupport.parkNanos(Math.min(wait, 10_000_000L));
                    continue;
                }
                action.run();
                timerOps.incrementAndGet();
                next += period;
                // If an action took longer than the period, do not burst to catch up.
                long now = System.nanoTime();
                if (next - now < 0) {
                    next = now + period;
                }
            }
        }, name);
        return t;
    }

    /** Size of one live-set object (payload plus headers, roughly). */
    static final int LIVE_OBJ_BYTES = 1024;

    /** A small linked node: short-lived garbage with references to trace. */
    static final class Node {
        Node next;
        long value;
        byte[] payload;

        Node(Node next, long value, byte[] payload) {
            this.next = next;
            this.value = value;
            this.payload = payload;
        }
    }

    static final class Worker implements Runnable {
        final Thread thread;
        final long bytesPerSec;
        final Object[] live;
        final Object[] young = new Object[4096];
        final SplittableRandom rnd;
        long ops = 0;
        long checksum = 0;
        /** Bytes this thread allocated in its run, or -1 if unknown. */
        long allocatedBytes = -1;

        Worker(long bytesPerSec, int liveSlots, long seed) {
            this.bytesPerSec = bytesPerSec;
            this.live = new Object[liveSlots];
            this.rnd = new SplittableRandom(seed);
            this.thread = new Thread(this, "gcheavy-worker");
        }

        @Override
        public void run() {
            // Allocate in batches of ~64 KiB, then sleep if ahead of the
            // target rate so the rate (and thus the GC frequency) is steady.
            final long batchBytes = 64 * 1024;
            final long allocatedAtStart = threadAllocatedBytes();
            long allocated = 0;
            long t0 = System.nanoTime();
            int yi = 0;
            while (!stop) {
                long batchEnd = allocated + batchBytes;
                while (allocated < batchEnd) {
                    int kind = rnd.nextInt(16);
                    if (kind == 0) {
                        // Goes into the live set, replacing an older entry:
                        // survives young GCs, gets promoted, later dies in
                        // old gen (drives concurrent cycles / mixed GCs).
                        byte[] b = new byte[LIVE_OBJ_BYTES - 16];
                        b[rnd.nextInt(b.length)] = (byte) ops;
                        live[rnd.nextInt(live.length)] = b;
                        allocated += LIVE_OBJ_BYTES;
                    } else if (kind < 6) {
                        // A short chain of nodes.
                        Node head = null;
                        int n = 1 + rnd.nextInt(8);
                        for (int i = 0; i < n; i++) {
                            head = new Node(head, ops + i, new byte[16 + rnd.nextInt(48)]);
                        }
                        young[yi] = head;
                        allocated += n * (32L + 64L);
                    } else {
                        int len = 16 + rnd.nextInt(1008);
                        byte[] b = new byte[len];
                        b[len - 1] = (byte) ops;
                        young[yi] = b;
                        allocated += 16L + len;
                    }
                    yi = (yi + 1) & (young.length - 1);
                    ops++;
                }
                Object o = young[rnd.nextInt(young.length)];
                if (o instanceof byte[]) {
                    checksum += ((byte[]) o).length;
                }
                long dueNs = (long) ((double) allocated * 1e9 / bytesPerSec);
                long aheadNs = dueNs - (System.nanoTime() - t0);
                if (aheadNs > 200_000L) {
                    LockSupport.parkNanos(aheadNs);
                }
            }
            if (checksum == 42) {
                // Keep checksum observable so the JIT cannot drop the reads.
                System.err.print("");
            }
            long allocatedAtEnd = threadAllocatedBytes();
            if (allocatedAtStart >= 0 && allocatedAtEnd >= 0) {
                allocatedBytes = allocatedAtEnd - allocatedAtStart;
            }
        }
    }

    /**
     * The bytes the calling thread allocated so far, as HotSpot counts them
     * (its TLAB and outside-TLAB allocations), or -1 when unsupported. Read
     * by the thread itself at the start and end of its run, because a
     * finished thread's count can no longer be asked for.
     */
    static long threadAllocatedBytes() {
        try {
            java.lang.management.ThreadMXBean mx = java.lang.management.ManagementFactory.getThreadMXBean();
            if (mx instanceof com.sun.management.ThreadMXBean) {
                com.sun.management.ThreadMXBean sun = (com.sun.management.ThreadMXBean) mx;
                if (sun.isThreadAllocatedMemorySupported() && sun.isThreadAllocatedMemoryEnabled()) {
                    return sun.getThreadAllocatedBytes(Thread.currentThread().getId());
                }
            }
        } catch (LinkageError e) {
            // A runtime image without java.management / jdk.management.
        }
        return -1;
    }

    /**
     * A CPU-bound thread: runs {@link #spin} (one counted loop) over and
     * over, resizing the loop after each run so that it takes about
     * {@code targetNs}. Allocates nothing.
     */
    static final class Spinner implements Runnable {
        final Thread thread;
        final long targetNs;
        long state;
        long loops = 0;

        Spinner(long targetNs, long seed, String name) {
            this.targetNs = targetNs;
            this.state = seed;
            this.thread = new Thread(this, name);
        }

        @Override
        public void run() {
            // Start small (the first runs are interpreted and slow) and let
            // the adjustment below find the trip count for targetNs.
            int n = 10_000;
            long acc = 0;
            while (!stop) {
                long t0 = System.nanoTime();
                acc += spin(n, state);
                long took = System.nanoTime() - t0;
                state = state * 0x9E3779B97F4A7C15L + acc;
                loops++;
                if (took > 0) {
                    // Move halfway to the estimate, clamped to [1000, 2^30].
                    double want = (double) n * targetNs / took;
                    long next = (long) ((n + want) / 2);
                    n = (int) Math.max(1_000L, Math.min(next, 1L << 30));
                }
            }
            // Publish the result so the JIT cannot drop the loops.
            sink += acc;
        }
    }

    /** Keeps the spinners' results alive (read by nobody, written racily). */
    static volatile long sink;

    /**
     * One counted loop of dependent 64-bit arithmetic (a linear congruential
     * sequence folded into an accumulator): no allocation, no calls, no
     * memory traffic, so nothing but a safepoint poll could interrupt it, and
     * the dependency chain keeps C2 from vectorising or folding it.
     */
    static long spin(int n, long seed) {
        long x = seed;
        long acc = 0;
        for (int i = 0; i < n; i++) {
            x = x * 6364136223846793005L + 1442695040888963407L;
            acc += (x >>> 29) ^ i;
        }
        return acc ^ x;
    }

    static void parseArgs(String[] args) {
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            switch (a) {
                case "--stop-on-stdin-eof":
                    stopOnStdinEof = true;
                    continue;
                case "--help":
                case "-h":
                    System.out.println("see the comment at the top of GcHeavy.java");
                    System.exit(0);
                    return;
                default:
                    break;
            }
            if (i + 1 >= args.length) {
                usage("missing value for " + a);
            }
            String v = args[++i];
            // Classic switch, not `->` rules: the class must load on JDK 11.
            switch (a) {
                case "--duration-secs":
                    durationSecs = num(a, v, 0);
                    break;
                case "--stop-file":
                    stopFile = Paths.get(v);
                    break;
                case "--gate-file":
                    gateFile = Paths.get(v);
                    break;
                case "--gate-timeout-secs":
                    gateTimeoutSecs = num(a, v, 0);
                    break;
                case "--alloc-mb-per-sec":
                    allocMbPerSec = num(a, v, 1);
                    break;
                case "--threads":
                    threads = (int) Math.min(num(a, v, 1), 64);
                    break;
                case "--live-mb":
                    liveMb = num(a, v, 0);
                    break;
                case "--system-gc-ms":
                    systemGcMs = num(a, v, 0);
                    break;
                case "--stack-traces-ms":
                    stackTracesMs = num(a, v, 0);
                    break;
                case "--spin-threads":
                    spinThreads = (int) Math.min(num(a, v, 0), 64);
                    break;
                case "--spin-loop-us":
                    spinLoopUs = num(a, v, 1);
                    break;
                case "--slowpoke-loop-us":
                    slowpokeLoopUs = num(a, v, 0);
                    break;
                case "--seed":
                    seed = num(a, v, Long.MIN_VALUE);
                    break;
                default:
                    usage("unknown flag " + a);
            }
        }
    }

    static long num(String flag, String v, long min) {
        try {
            long n = Long.parseLong(v);
            if (n < min) {
                usage(flag + " must be >= " + min + ", got " + v);
            }
            return n;
        } catch (NumberFormatException e) {
            usage(flag + " wants an integer, got " + v);
            return 0;
        }
    }

    static void usage(String msg) {
        System.err.println("GcHeavy: " + msg);
        System.exit(2);
    }
}
