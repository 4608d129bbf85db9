//go:build cgo

// A cgo call at start-up, so that a cgo build of the workload is a real cgo
// program (runtime/cgo, a C toolchain, the external linker when asked).
package main

// static int pausewatch_cgo_answer(void) { return 42; }
import "C"

func init() {
	if C.pausewatch_cgo_answer() == 42 {
		cgoUsed = "yes"
	}
}
