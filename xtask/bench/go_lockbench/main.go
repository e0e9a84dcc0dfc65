// go_lockbench: the Go twin of lockbench.c for `cargo xtask bench` (Go overhead runs).
//
// N goroutines take one shared sync.Mutex in a loop and spin C µs inside it and O µs
// outside it, timed by the monotonic clock (read in the vDSO, no system call), as
// lockbench.c does: a loop of calibrated iterations runs at a speed that moves with the
// VM host's load, which would change the workload between runs. With more goroutines
// than cores, many acquisitions find the lock taken and go through lockSlow: every Lock,
// Unlock and slow path fires a tracer probe under --holds, and the parks fire the
// default mode's probes.
//
// Usage:
//
//	go_lockbench [-goroutines N] [-cs-us C] [-out-us O]
//
// As lockbench.c --control: it prints `ready pid=P`, starts the goroutines at once and
// runs until stdin closes; each line read from stdin makes it print
// `mark ops=N t_ns=T`: the Lock/Unlock pairs made so far (all goroutines together) and
// the monotonic time in ns since the program started (only the differences of two marks
// mean anything). Several observers can then take turns on one process.
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

// worker stores its running count after every pair (only it writes it), so a mark can
// read the total without stopping anyone.
//
//go:noinline
func worker(stop *atomic.Bool, cs, out time.Duration, ops *atomic.Uint64) {
	n := uint64(0)
	for !stop.Load() {
		mu.Lock()
		shared++
		spin(cs)
		mu.Unlock()
		spin(out)
		n++
		ops.Store(n)
	}
}

func main() {
	goroutines := flag.Int("goroutines", 4, "workers")
	csUs := flag.Float64("cs-us", 1, "critical section (µs)")
	outUs := flag.Float64("out-us", 0.5, "work outside the lock (µs)")
	flag.Parse()
	start := time.Now()
	var stop atomic.Bool
	ops := make([]atomic.Uint64, *goroutines*8) // one cache line apart
	var wg sync.WaitGroup
	for i := 0; i < *goroutines; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			worker(&stop, time.Duration(*csUs*1000), time.Duration(*outUs*1000), &ops[i*8])
		}(i)
	}
	fmt.Printf("ready pid=%d\n", os.Getpid())
	stdin := bufio.NewReader(os.Stdin)
	for {
		if _, err := stdin.ReadString('\n'); err != nil {
			break
		}
		// The clock first, the sum right after it.
		at := time.Since(start).Nanoseconds()
		total := uint64(0)
		for i := range ops {
			total += ops[i].Load()
		}
		fmt.Printf("mark ops=%d t_ns=%d\n", total, at)
	}
	stop.Store(true)
	wg.Wait()
}
