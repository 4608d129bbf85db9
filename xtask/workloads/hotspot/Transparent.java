// Transparent: a deterministic HotSpot workload for the "the agent changes
// nothing in its targets" test. Its whole output (stdout, stderr, exit
// status) depends only on its arguments, never on timing, so a run with the
// agent attached must print exactly what a run without it prints.
//
// Protocol: prints "ready" on stdout, then waits for one line on stdin (the
// test attaches the agent in between), then runs ROUNDS rounds. Each round
// allocates seeded random arrays, keeps some of them live, calls
// System.gc() and Thread.getAllStackTraces() (safepoints the agent times)
// and prints a checksum line. Writes one line to stderr and exits 7.
//
// Usage: java Transparent.java [ROUNDS] [SEED]

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

public final class Transparent {
    public static void main(String[] args) throws Exception {
        int rounds = args.length > 0 ? Integer.parseInt(args[0]) : 20;
        long seed = args.length > 1 ? Long.parseLong(args[1]) : 42;
        System.out.println("ready");
        System.out.flush();
        String go = new BufferedReader(new InputStreamReader(System.in)).readLine();
        System.out.println("go " + (go == null ? "<eof>" : go));

        SplittableRandom random = new SplittableRandom(seed);
        List<long[]> live = new ArrayList<>();
        long total = 0;
        for (int round = 0; round < rounds; round++) {
            long checksum = 0;
            for (int i = 0; i < 2000; i++) {
                long[] a = new long[1 + random.nextInt(512)];
                for (int j = 0; j < a.length; j++) {
                    a[j] = random.nextLong();
                }
                checksum = checksum * 31 + a[a.length / 2];
                if (random.nextInt(16) == 0) {
                    live.add(a);
                }
            }
            if (live.size() > 4000) {
                live.subList(0, 2000).clear();
            }
            System.gc();
            int threads = Thread.getAllStackTraces().isEmpty() ? 0 : 1;
            total ^= checksum;
            System.out.printf("round %d checksum %016x live %d threads-seen %d%n",
                round, checksum, live.size(), threads);
        }
        System.out.printf("total %016x%n", total);
        System.out.flush();
        System.err.println("Transparent: finished " + rounds + " rounds");
        System.exit(7);
    }
}
