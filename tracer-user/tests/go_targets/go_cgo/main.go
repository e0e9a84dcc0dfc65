// go_cgo: a Go program with C inside (cgo). After START_MS, for SECONDS, 4 goroutines call
// into C in a loop, where c_work takes the C global pthread mutex c_lock, sleeps ~200 µs
// and releases it (a contended pthread mutex, futex-based, on the threads cgo calls run
// on), while 4 other goroutines contend on the Go sync.Mutex goMu.
//
// Usage: go_cgo SECONDS START_MS
//
// Prints key=value facts, then `ready`:
//
//	pid=N        this process
//	lock.c=0x…   &c_lock, as C sees it (the C global c_lock, a pthread_mutex_t)
//	lock.go=0x…  &goMu (the global main.goMu)
//
// After `ready` it prints `c_ops=N`, `go_ops=N` and `done` when the SECONDS of load are
// over, then keeps living, idle, until it exits by itself 120 s after it started.
package main

/*
#include <pthread.h>
#include <unistd.h>

pthread_mutex_t c_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned long c_ops;

static void c_work(void) {
	pthread_mutex_lock(&c_lock);
	c_ops++;
	usleep(200);
	pthread_mutex_unlock(&c_lock);
}

static void *c_lock_addr(void) { return &c_lock; }

static unsigned long c_ops_done(void) {
	unsigned long n;
	pthread_mutex_lock(&c_lock);
	n = c_ops;
	pthread_mutex_unlock(&c_lock);
	return n;
}
*/
import "C"

import (
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"
)

var (
	goMu  sync.Mutex
	goOps uint64
	work  [16]uint64
)

// cLoop calls into C (c_work: the pthread mutex) until the deadline.
//
//go:noinline
func cLoop(until time.Time, wg *sync.WaitGroup) {
	defer wg.Done()
	for time.Now().Before(until) {
		C.c_work()
	}
}

// goSection is the critical section under goMu: a few microseconds of work.
//
//go:noinline
func goSection(i int) {
	goMu.Lock()
	goOps++
	for j := 0; j < 256; j++ {
		work[(i+j)%len(work)] += goOps
	}
	goMu.Unlock()
}

// goLoop contends on goMu until the deadline.
//
//go:noinline
func goLoop(until time.Time, wg *sync.WaitGroup) {
	defer wg.Done()
	for i := 0; ; i++ {
		if i%256 == 0 && !time.Now().Before(until) {
			return
		}
		goSection(i)
	}
}

func fact(key string, value interface{}) {
	fmt.Printf("%s=%v\n", key, value)
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: go_cgo SECONDS START_MS")
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
	fact("lock.c", fmt.Sprintf("%p", C.c_lock_addr()))
	fact("lock.go", fmt.Sprintf("%p", &goMu))
	fmt.Println("ready")

	time.Sleep(time.Duration(startMS) * time.Millisecond)
	until := time.Now().Add(time.Duration(secs) * time.Second)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(2)
		go cLoop(until, &wg)
		go goLoop(until, &wg)
	}
	wg.Wait()
	goMu.Lock()
	fact("go_ops", goOps)
	goMu.Unlock()
	fact("c_ops", uint64(C.c_ops_done()))
	fmt.Println("done")

	for time.Since(t0) < 120*time.Second {
		time.Sleep(100 * time.Millisecond)
	}
	os.Exit(0)
}
