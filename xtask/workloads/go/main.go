// Command gcload is the Go workload of pausewatch's end-to-end tests: it
// allocates steadily so that the garbage collector runs tens of times per
// second, calls runtime.ReadMemStats in a loop (a stop-the-world of its own),
// and checks its own results so that a probe that disturbed it would show.
//
// runtime.Stack(all goroutines), runtime.GOMAXPROCS changes and
// runtime/trace starts too when asked (stop-the-world pauses of their own).
// With -gate it waits for a line on stdin after "ready", so that a tracer
// attached in between sees every call it counts.
//
// Output (stdout): "ready pid=N" at start; at the end "rounds=N",
// "readmemstats=N", "stacks=N", "gomaxprocs=N", "traces=N",
// "throughput=X rounds/s", "cgo=yes|no" and "checksum=C", where C is the same
// for every run and "ok" if every round computed it. Built with Go 1.22 or
// later, it also prints the runtime's stopping-time histograms as
// "stopping tag=start ..." when the work starts and "stopping tag=end ..."
// when it is done (see stopping.go).
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/trace"
	"time"
)

// cgoUsed is set by cgo.go, which only cgo builds compile.
var cgoUsed = "no"

// stoppingMark prints the runtime's stopping-time histograms; set by
// stopping.go, which only Go 1.22+ builds compile.
var stoppingMark = func(tag string) {}

type node struct {
	next  *node
	value uint64
	pad   [48]byte
}

// round builds a fresh linked list and a few buffers (garbage), and returns
// a checksum that depends only on n.
func round(n int) uint64 {
	var head *node
	for i := 0; i < n; i++ {
		head = &node{next: head, value: uint64(i)*2654435761 + 1}
	}
	var sum uint64
	for p := head; p != nil; p = p.next {
		sum = sum*31 + p.value
	}
	for i := 0; i < 16; i++ {
		buf := make([]byte, 16<<10)
		buf[i] = byte(sum)
		sum += uint64(buf[i])
	}
	return sum
}

func main() {
	duration := flag.Duration("duration", 10*time.Second, "how long to run")
	memstats := flag.Duration("memstats", 100*time.Millisecond, "interval of runtime.ReadMemStats calls (0: none)")
	live := flag.Int("live-mb", 16, "live heap kept in MB")
	workers := flag.Int("workers", 1, "goroutines allocating in parallel")
	stacks := flag.Duration("stacks", 0, "interval of runtime.Stack(all goroutines) calls (0: none)")
	procs := flag.Duration("gomaxprocs", 0, "interval of runtime.GOMAXPROCS changes (0: none)")
	traces := flag.Duration("trace", 0, "interval of runtime/trace start and stop (0: none)")
	gate := flag.Bool("gate", false, "wait for a line on stdin after printing ready")
	flag.Parse()

	// Live data, so that each collection has something to mark.
	keep := make([][]byte, *live)
	for i := range keep {
		keep[i] = make([]byte, 1<<20)
		keep[i][i] = byte(i)
	}

	expected := round(10000)
	fmt.Printf("ready pid=%d\n", os.Getpid())
	if *gate {
		if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
			fmt.Printf("gate: %v\n", err)
			os.Exit(3)
		}
	}

	stoppingMark("start")

	stop := make(chan struct{})
	done := make(chan int)
	stacksDone := make(chan int)
	go func() {
		calls := 0
		if *stacks > 0 {
			buf := make([]byte, 64<<10)
			t := time.NewTicker(*stacks)
			defer t.Stop()
		loop:
			for {
				select {
				case <-stop:
					break loop
				case <-t.C:
					runtime.Stack(buf, true)
					calls++
				}
			}
		}
		stacksDone <- calls
	}()
	// every runs f at each tick of interval until stop and sends the count.
	every := func(interval time.Duration, f func(), out chan<- int) {
		calls := 0
		if interval > 0 {
			t := time.NewTicker(interval)
			defer t.Stop()
		loop:
			for {
				select {
				case <-stop:
					break loop
				case <-t.C:
					f()
					calls++
				}
			}
		}
		out <- calls
	}
	procsDone := make(chan int)
	base := runtime.GOMAXPROCS(0)
	flip := false
	other := base - 1
	if other < 1 {
		other = base + 1
	}
	go every(*procs, func() {
		// Alternate: setting the current value stops nothing. Fewer Ps
		// rather than more, so the change adds no threads to the CPUs.
		flip = !flip
		if flip {
			runtime.GOMAXPROCS(other)
		} else {
			runtime.GOMAXPROCS(base)
		}
	}, procsDone)
	tracesDone := make(chan int)
	go every(*traces, func() {
		if err := trace.Start(io.Discard); err != nil {
			fmt.Printf("trace: %v\n", err)
			os.Exit(2)
		}
		trace.Stop()
	}, tracesDone)
	go func() {
		calls := 0
		if *memstats > 0 {
			var m runtime.MemStats
			t := time.NewTicker(*memstats)
			defer t.Stop()
		loop:
			for {
				select {
				case <-stop:
					break loop
				case <-t.C:
					runtime.ReadMemStats(&m)
					calls++
				}
			}
		}
		done <- calls
	}()

	start := time.Now()
	deadline := start.Add(*duration)
	counts := make(chan int)
	for w := 0; w < *workers; w++ {
		go func(w int) {
			rounds := 0
			for time.Now().Before(deadline) {
				if got := round(10000); got != expected {
					fmt.Printf("checksum mismatch in worker %d round %d: %d != %d\n", w, rounds, got, expected)
					os.Exit(2)
				}
				rounds++
				if rounds%4 == 0 {
					time.Sleep(time.Millisecond)
				}
			}
			counts <- rounds
		}(w)
	}
	rounds := 0
	for w := 0; w < *workers; w++ {
		rounds += <-counts
	}
	elapsed := time.Since(start).Seconds()
	close(stop)
	calls := <-done
	stackCalls := <-stacksDone
	procCalls := <-procsDone
	traceCalls := <-tracesDone
	stoppingMark("end")
	runtime.KeepAlive(keep)
	fmt.Printf("rounds=%d\n", rounds)
	fmt.Printf("readmemstats=%d\n", calls)
	fmt.Printf("stacks=%d\n", stackCalls)
	fmt.Printf("gomaxprocs=%d\n", procCalls)
	fmt.Printf("traces=%d\n", traceCalls)
	fmt.Printf("throughput=%.1f rounds/s\n", float64(rounds)/elapsed)
	fmt.Printf("cgo=%s\n", cgoUsed)
	fmt.Printf("checksum=%d ok\n", expected)
}
