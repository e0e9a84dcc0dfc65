// go_rwleak: the ingestion incident. Registry.Update takes the registry's write lock and
// returns early on an error path without unlocking it; every later reader (Registry.Get)
// blocks on RLock forever, and the pile of blocked readers keeps growing. There is no
// deadlock cycle: one goroutine took the lock and will never release it.
//
// Usage: go_rwleak HOLDER START_MS
//
//	HOLDER exits: the leaking goroutine returns (exits) after the leak.
//	HOLDER lives: it then blocks forever on a channel receive (blocked elsewhere).
//	HOLDER spins: it then keeps computing forever (still running).
//
// Prints key=value facts, then `ready`, waits START_MS, then leaks the lock and starts
// readers: 4 at once, then more every 100 ms (8 per step at first, then 1/8 of those
// already started, so the count doubles about every 0.6 s), up to 4000.
//
//	pid=N              this process
//	holder=HOLDER
//	goid.leaker=N      goroutine id (as in the runtime's dumps) of the goroutine that leaks
//	lock.registry=0x…  &registry.mu (the registry is allocated on the heap at run time, as
//	                   in a real service; mu is its first field)
//	line.leak=N        source line (main.go) of the r.mu.Lock() call that is never undone
//
// After `ready` it prints `leaked` once the lock is leaked and `readers=N` about once a
// second. main keeps sleeping (so the runtime's "all goroutines are asleep" check never
// fires) and the process exits by itself after 120 s.
package main

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Registry maps stream names to their schema versions.
type Registry struct {
	mu       sync.RWMutex
	versions map[string]int
}

// registry points to the one Registry, allocated in main.
var registry *Registry

var errBadVersion = errors.New("schema version must be positive")

// Update sets a stream's schema version. Its error path forgets to unlock: the bug.
// announce is called just before the lock is taken, with the line of the Lock call (it is
// where the leaking goroutine waits for the start signal).
//
//go:noinline
func (r *Registry) Update(stream string, version int, announce func(lockLine int)) error {
	_, _, here, _ := runtime.Caller(0)
	announce(here + 2) // the r.mu.Lock() below: keep it exactly two lines down
	r.mu.Lock()
	_, _, after, _ := runtime.Caller(0)
	if after != here+3 {
		panic(fmt.Sprintf("go_rwleak: Lock call is not at line %d (edit moved it)", here+2))
	}
	if version <= 0 {
		return errBadVersion // BUG: r.mu is still locked
	}
	r.versions[stream] = version
	r.mu.Unlock()
	return nil
}

// Get reads a stream's schema version under the read lock.
//
//go:noinline
func (r *Registry) Get(stream string) int {
	r.mu.RLock()
	v := r.versions[stream]
	r.mu.RUnlock()
	return v
}

// goid returns the current goroutine's id, parsed from "goroutine 18 [running]:".
func goid() int64 {
	var buf [64]byte
	n := runtime.Stack(buf[:], false)
	fields := strings.Fields(string(buf[:n]))
	if len(fields) < 2 || fields[0] != "goroutine" {
		panic("unexpected runtime.Stack output: " + string(buf[:n]))
	}
	id, err := strconv.ParseInt(fields[1], 10, 64)
	if err != nil {
		panic(err)
	}
	return id
}

type announcement struct {
	goid     int64
	lockLine int
}

// leaker runs the bad update, then exits or blocks forever.
//
//go:noinline
func leaker(after string, facts chan<- announcement, start <-chan struct{}, leaked chan<- struct{}) {
	id := goid()
	err := registry.Update("clicks", -1, func(lockLine int) {
		facts <- announcement{goid: id, lockLine: lockLine}
		<-start
	})
	if err == nil {
		panic("go_rwleak: the update was supposed to fail")
	}
	close(leaked)
	switch after {
	case "lives":
		blockForever()
	case "spins":
		spinForever()
	}
}

var spinSink uint64

// spinForever keeps the calling goroutine running (or runnable) for good.
//
//go:noinline
func spinForever() {
	x := uint64(1)
	for {
		for i := 0; i < 1_000_000; i++ {
			x = x*6364136223846793005 + 1442695040888963407
		}
		spinSink = x
	}
}

// blockForever parks the calling goroutine on a channel nobody sends on.
//
//go:noinline
func blockForever() {
	never := make(chan struct{})
	<-never
}

var readersStarted atomic.Int64

// reader is one ingestion worker that needs the schema.
//
//go:noinline
func reader(i int) {
	readersStarted.Add(1)
	_ = registry.Get("stream" + strconv.Itoa(i%16))
}

const maxReaders = 4000

// spawnReaders starts 4 readers, then adds more every 100 ms until maxReaders.
func spawnReaders() {
	n := 0
	add := func(k int) {
		for ; k > 0 && n < maxReaders; k-- {
			go reader(n)
			n++
		}
	}
	add(4)
	for n < maxReaders {
		time.Sleep(100 * time.Millisecond)
		step := n / 8
		if step < 8 {
			step = 8
		}
		add(step)
	}
}

func fact(key string, value interface{}) {
	fmt.Printf("%s=%v\n", key, value)
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: go_rwleak exits|lives|spins START_MS")
	os.Exit(2)
}

func main() {
	if len(os.Args) != 3 {
		usage()
	}
	holder := os.Args[1]
	switch holder {
	case "exits", "lives", "spins":
	default:
		usage()
	}
	startMS, err := strconv.Atoi(os.Args[2])
	if err != nil || startMS < 0 {
		usage()
	}
	t0 := time.Now()
	registry = &Registry{versions: make(map[string]int)}

	facts := make(chan announcement, 1)
	start := make(chan struct{})
	leaked := make(chan struct{})
	go leaker(holder, facts, start, leaked)
	a := <-facts

	fact("pid", os.Getpid())
	fact("holder", holder)
	fact("goid.leaker", a.goid)
	fact("lock.registry", fmt.Sprintf("%p", &registry.mu))
	fact("line.leak", a.lockLine)
	fmt.Println("ready")

	time.Sleep(time.Duration(startMS) * time.Millisecond)
	close(start)
	<-leaked
	fmt.Println("leaked")
	go spawnReaders()

	lastReport := time.Now()
	for time.Since(t0) < 120*time.Second {
		time.Sleep(100 * time.Millisecond)
		if time.Since(lastReport) >= time.Second {
			lastReport = time.Now()
			fmt.Printf("readers=%d\n", readersStarted.Load())
		}
	}
	fmt.Fprintln(os.Stderr, "go_rwleak: 120 s timeout, exiting")
	os.Exit(0)
}
