// go_hot: one hot sync.Mutex and one cold one. After START_MS, 4 goroutines hammer hotMu
// (a tiny critical section in a tight loop) for SECONDS, while one goroutine takes coldMu
// about 5 times a second.
//
// Usage: go_hot SECONDS START_MS
//
// Prints key=value facts, then `ready`:
//
//	pid=N          this process
//	lock.hot=0x…   &hotMu (the global main.hotMu)
//	lock.cold=0x…  &coldMu (the global main.coldMu)
//
// After `ready` it prints `done` when the SECONDS of load are over (with `hot_ops=N`, the
// number of hot critical sections, just before it), then keeps living, idle (main sleeps,
// so the runtime's "all goroutines are asleep" check never fires) until it exits by itself
// 120 s after it started.
package main

import (
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"
)

var (
	hotMu   sync.Mutex
	hotN    uint64
	coldMu  sync.Mutex
	coldN   uint64
	scratch [16]uint64
)

// hotSection is the tiny critical section under hotMu.
//
//go:noinline
func hotSection(i int) {
	hotMu.Lock()
	hotN++
	for j := 0; j < 8; j++ {
		scratch[(i+j)%len(scratch)] += hotN
	}
	hotMu.Unlock()
}

// hammer loops on hotSection until the deadline.
//
//go:noinline
func hammer(until time.Time, wg *sync.WaitGroup) {
	defer wg.Done()
	for i := 0; ; i++ {
		if i%1024 == 0 && !time.Now().Before(until) {
			return
		}
		hotSection(i)
	}
}

// coldSection is the rarely taken critical section under coldMu.
//
//go:noinline
func coldSection() {
	coldMu.Lock()
	coldN++
	coldMu.Unlock()
}

// chill takes coldMu every 200 ms until the deadline.
//
//go:noinline
func chill(until time.Time, wg *sync.WaitGroup) {
	defer wg.Done()
	for time.Now().Before(until) {
		coldSection()
		time.Sleep(200 * time.Millisecond)
	}
}

func fact(key string, value interface{}) {
	fmt.Printf("%s=%v\n", key, value)
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: go_hot SECONDS START_MS")
	os.Exit(2)
}

func main() {
	if len(os.Args) != 3 {
		usage()
	}
	secs, err1 := strconv.Atoi(os.Args[1])
	startMS, err2 := strconv.Atoi(os.Args[2])
	if err1 != nil || err2 != nil || secs < 0 || startMS < 0 {
		usage()
	}
	t0 := time.Now()
	fact("pid", os.Getpid())
	fact("lock.hot", fmt.Sprintf("%p", &hotMu))
	fact("lock.cold", fmt.Sprintf("%p", &coldMu))
	fmt.Println("ready")

	time.Sleep(time.Duration(startMS) * time.Millisecond)
	until := time.Now().Add(time.Duration(secs) * time.Second)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go hammer(until, &wg)
	}
	wg.Add(1)
	go chill(until, &wg)
	wg.Wait()
	hotMu.Lock()
	fact("hot_ops", hotN)
	hotMu.Unlock()
	fmt.Println("done")

	for time.Since(t0) < 120*time.Second {
		time.Sleep(100 * time.Millisecond)
	}
	os.Exit(0)
}
