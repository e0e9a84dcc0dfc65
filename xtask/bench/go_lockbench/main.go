// go_lockbench: the Go twin of lockbench.c for `cargo xtask bench` (Go overhead runs).
//
// N goroutines take one shared sync.Mutex in a loop and spin 1 µs inside it and 0.5 µs
// outside it, timed by the monotonic clock (read in the vDSO, no system call), as
// lockbench.c does: a loop of calibrated iterations runs at a speed that moves with the
// VM host's load, which would change the workload between runs. With more goroutines
// than cores, many acquisitions find the lock taken and go through lockSlow: every Lock,
// Unlock and slow path fires a tracer probe, the worst case for the Go lock sites.
//
// Usage:
//
//	go_lockbench [-goroutines N] [-seconds D] [-cs-us C] [-out-us O]
//
// It prints `ready pid=P`, blocks on a byte from stdin (so a tracer can attach first and
// the attach cost stays out of the measurement), runs, and prints `ops_per_sec=N`
// (Lock/Unlock pairs per second, all goroutines together).
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

var (
	mu     sync.Mutex
	shared uint64
)

// spin busy-waits for d.
//
//go:noinline
func spin(d time.Duration) {
	start := time.Now()
	for time.Since(start) < d {
	}
}

//go:noinline
func worker(stop *atomic.Bool, cs, out time.Duration, ops *uint64) {
	n := uint64(0)
	for !stop.Load() {
		mu.Lock()
		shared++
		spin(cs)
		mu.Unlock()
		spin(out)
		n++
	}
	*ops = n
}

func main() {
	goroutines := flag.Int("goroutines", 4, "workers")
	seconds := flag.Float64("seconds", 5, "run time")
	csUs := flag.Float64("cs-us", 1, "critical section (µs)")
	outUs := flag.Float64("out-us", 0.5, "work outside the lock (µs)")
	flag.Parse()
	fmt.Printf("ready pid=%d\n", os.Getpid())
	if _, err := bufio.NewReader(os.Stdin).ReadByte(); err != nil {
		fmt.Fprintln(os.Stderr, "go_lockbench: no start byte on stdin:", err)
		os.Exit(1)
	}
	var stop atomic.Bool
	ops := make([]uint64, *goroutines*8) // one cache line apart
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < *goroutines; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			worker(&stop, time.Duration(*csUs*1000), time.Duration(*outUs*1000), &ops[i*8])
		}(i)
	}
	time.Sleep(time.Duration(*seconds * float64(time.Second)))
	stop.Store(true)
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	total := uint64(0)
	for _, n := range ops {
		total += n
	}
	fmt.Printf("ops_per_sec=%.0f\n", float64(total)/elapsed)
}
