// go_lockbench: the Go twin of lockbench.c for `cargo xtask bench` (Go overhead runs).
//
// N goroutines take one shared sync.Mutex in a loop and spin a calibrated ~1 µs inside
// it and ~0.5 µs outside it. With more goroutines than cores, many acquisitions find the
// lock taken and go through lockSlow: every Lock, Unlock and slow path fires a tracer
// probe, the worst case for the Go lock sites.
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
	sink   uint64
)

//go:noinline
func spin(iters uint64) {
	x := sink
	for i := uint64(0); i < iters; i++ {
		x = x*6364136223846793005 + 1442695040888963407
	}
	sink = x
}

func calibrate() float64 {
	const iters = 20_000_000
	start := time.Now()
	spin(iters)
	return float64(iters) / float64(time.Since(start).Microseconds())
}

//go:noinline
func worker(stop *atomic.Bool, cs, out uint64, ops *uint64) {
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
	perUs := calibrate()
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
			worker(&stop, uint64(*csUs*perUs), uint64(*outUs*perUs), &ops[i*8])
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
