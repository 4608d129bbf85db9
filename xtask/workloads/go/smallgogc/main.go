// small_gogc: a Go workload for pausewatch's rule-engine suite. Run it with
// a small GOGC (the suite uses GOGC=10) so that the collector runs every
// few hundred kilobytes of allocation: the heap is kept small (a live set of
// a few MB) while goroutines allocate short-lived trees as fast as they can,
// which makes stop-the-world phases frequent. Expected: throughput profile,
// gc_overhead and frequent_gc findings.
//
// Usage: GOGC=10 go run ./smallgogc [-duration 30s] [-workers 2] [-live-mb 4]
// Prints "ready" once started and "done <allocations>" at the end.
package main

import (
	"flag"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

type node struct {
	left, right *node
	payload     [48]byte
}

func tree(depth int) *node {
	if depth == 0 {
		return &node{}
	}
	return &node{left: tree(depth - 1), right: tree(depth - 1)}
}

func main() {
	duration := flag.Duration("duration", 30*time.Second, "how long to run")
	workers := flag.Int("workers", 2, "allocating goroutines")
	liveMB := flag.Int("live-mb", 4, "size of the long-lived set")
	flag.Parse()
	if *workers < 1 || *liveMB < 0 {
		fmt.Fprintln(os.Stderr, "small_gogc: -workers must be >= 1 and -live-mb >= 0")
		os.Exit(2)
	}

	// Long-lived data the collector has to mark every cycle.
	live := make([]*node, 0)
	for size := 0; size < *liveMB<<20; size += 64 << 10 {
		live = append(live, tree(10))
	}

	fmt.Println("ready")
	var allocations atomic.Int64
	stop := time.Now().Add(*duration)
	var wg sync.WaitGroup
	for w := 0; w < *workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				t := tree(8)
				if t.left == nil {
					panic("unreachable")
				}
				allocations.Add(1)
			}
		}()
	}
	wg.Wait()
	fmt.Printf("done %d (live set %d trees)\n", allocations.Load(), len(live))
}
