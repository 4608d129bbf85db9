//go:build go1.22

// From Go 1.22 the runtime keeps histograms of how long each stop-the-world
// took to stop every P (/sched/pauses/stopping/gc and /other); the
// end-to-end test compares the agent's stopping times with them. Older
// toolchains skip this file and print no "stopping" lines.
package main

import (
	"fmt"
	"math"
	"runtime/metrics"
	"strings"
	"syscall"
	"unsafe"
)

func init() {
	stoppingMark = printStopping
}

// monotonicNs is CLOCK_MONOTONIC, the clock of the runtime's nanotime and of
// the agent's event timestamps (Go's time package exposes no absolute
// monotonic reading).
func monotonicNs() int64 {
	var ts syscall.Timespec
	const clockMonotonic = 1
	if _, _, errno := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockMonotonic, uintptr(unsafe.Pointer(&ts)), 0); errno != 0 {
		fmt.Printf("clock_gettime: %v\n", errno)
		return 0
	}
	return ts.Sec*1e9 + ts.Nsec
}

// printStopping prints one line:
//
//	stopping tag=T t0=NS t1=NS bounds=B,B,... gc=LO:HI:N,... other=LO:HI:N,...
//
// t0 and t1 (CLOCK_MONOTONIC ns) bracket the read; bounds are the runtime's
// bucket boundaries in ns ("-inf"/"inf" for the open ends; both histograms
// share them), and each histogram lists its non-empty buckets [LO, HI).
func printStopping(tag string) {
	samples := []metrics.Sample{
		{Name: "/sched/pauses/stopping/gc:seconds"},
		{Name: "/sched/pauses/stopping/other:seconds"},
	}
	t0 := monotonicNs()
	metrics.Read(samples)
	t1 := monotonicNs()
	line := fmt.Sprintf("stopping tag=%s t0=%d t1=%d", tag, t0, t1)
	if samples[0].Value.Kind() == metrics.KindFloat64Histogram {
		var bounds []string
		for _, b := range samples[0].Value.Float64Histogram().Buckets {
			bounds = append(bounds, nanos(b))
		}
		line += " bounds=" + strings.Join(bounds, ",")
	}
	for i, class := range []string{"gc", "other"} {
		if samples[i].Value.Kind() != metrics.KindFloat64Histogram {
			line += " " + class + "=unsupported"
			continue
		}
		h := samples[i].Value.Float64Histogram()
		var buckets []string
		for k, n := range h.Counts {
			if n != 0 {
				buckets = append(buckets, fmt.Sprintf("%s:%s:%d", nanos(h.Buckets[k]), nanos(h.Buckets[k+1]), n))
			}
		}
		line += " " + class + "=" + strings.Join(buckets, ",")
	}
	fmt.Println(line)
}

// nanos prints a bucket boundary in seconds as whole nanoseconds (the
// runtime's boundaries are whole nanoseconds divided by 1e9).
func nanos(seconds float64) string {
	switch {
	case math.IsInf(seconds, -1):
		return "-inf"
	case math.IsInf(seconds, 1):
		return "inf"
	}
	return fmt.Sprintf("%d", int64(math.Round(seconds*1e9)))
}
