// go_defers: goroutines parked inside functions that hold a sync lock through a pending
// deferred unlock (`mu.Lock(); defer mu.Unlock()`), in every shape the defer analysis
// (tracer-user/src/go/defers) reads, plus frames that must yield nothing.
//
// Usage: go_defers
//
// Starts one goroutine per holder function below, waits until each has parked (blocked
// on a channel receive while its locks are held), prints key=value facts, then `ready`,
// and sleeps; it exits by itself after 120 s.
//
//	pid=N
//	hold.GOID.LOCK=FUNC MODE    goroutine GOID holds the lock at address LOCK (0x…) in
//	                            mode MODE (read|write) through a deferred unlock pending
//	                            in its frame of function FUNC
//	chain.GOID.LOCK=FUNC MODE   the same, for a defer kept in a `_defer` record (a defer
//	                            in a loop)
//	park.GOID=FUNC              every parked goroutine, by the function it parked in
//	                            (with or without holds)
package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

var (
	globalMu  sync.Mutex   // defer globalMu.Unlock()
	readRW    sync.RWMutex // defer readRW.RUnlock()
	writeRW   sync.RWMutex // defer writeRW.Unlock()
	twoA      sync.Mutex   // first of two deferred unlocks
	twoB      sync.Mutex   // second of two deferred unlocks
	notTaken  sync.Mutex   // locked and unlocked only when cond is true (never here)
	released  sync.Mutex   // locked and unlocked by a callee that has returned
	closureG  sync.Mutex   // defer func() { closureG.Unlock() }(): the closure names the global
	otherDone atomic.Int32
)

// store is allocated on the heap; its lock is not its first field.
type store struct {
	name  string
	count int
	mu    sync.Mutex
	rw    sync.RWMutex
}

// parker blocks its caller until release is closed, after telling main who parked.
type parker struct {
	parked  chan string
	release chan struct{}
}

// goid is the current goroutine's id, as the runtime's stack dumps print it.
func goid() int {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	field := strings.Fields(strings.TrimPrefix(string(buf), "goroutine "))[0]
	id, err := strconv.Atoi(field)
	if err != nil {
		panic(err)
	}
	return id
}

//go:noinline
func (p *parker) park(facts string) {
	p.parked <- facts
	<-p.release
}

func hold(id int, fn string, lock any, mode string) string {
	return fmt.Sprintf("hold.%d.%p=%s %s\n", id, lock, fn, mode)
}

//go:noinline
func holdGlobal(p *parker) {
	globalMu.Lock()
	defer globalMu.Unlock()
	id := goid()
	p.park(hold(id, "main.holdGlobal", &globalMu, "write"))
}

//go:noinline
func (s *store) holdField(p *parker) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := goid()
	p.park(hold(id, "main.(*store).holdField", &s.mu, "write"))
}

//go:noinline
func holdRead(p *parker) {
	readRW.RLock()
	defer readRW.RUnlock()
	id := goid()
	p.park(hold(id, "main.holdRead", &readRW, "read"))
}

//go:noinline
func holdWrite(p *parker) {
	writeRW.Lock()
	defer writeRW.Unlock()
	id := goid()
	p.park(hold(id, "main.holdWrite", &writeRW, "write"))
}

//go:noinline
func (s *store) holdFieldRead(p *parker) {
	s.rw.RLock()
	defer s.rw.RUnlock()
	id := goid()
	p.park(hold(id, "main.(*store).holdFieldRead", &s.rw, "read"))
}

//go:noinline
func holdTwo(p *parker) {
	twoA.Lock()
	defer twoA.Unlock()
	twoB.Lock()
	defer twoB.Unlock()
	id := goid()
	p.park(hold(id, "main.holdTwo", &twoA, "write") + hold(id, "main.holdTwo", &twoB, "write"))
}

//go:noinline
func holdClosure(p *parker, mu *sync.Mutex) {
	mu.Lock()
	defer func() {
		mu.Unlock()
	}()
	id := goid()
	p.park(hold(id, "main.holdClosure", mu, "write"))
}

//go:noinline
func holdClosureGlobal(p *parker) {
	closureG.Lock()
	defer func() {
		closureG.Unlock()
	}()
	id := goid()
	p.park(hold(id, "main.holdClosureGlobal", &closureG, "write"))
}

//go:noinline
func holdLoop(p *parker, locks []*sync.Mutex) {
	for _, mu := range locks {
		mu.Lock()
		defer mu.Unlock()
	}
	id := goid()
	facts := ""
	for _, mu := range locks {
		facts += fmt.Sprintf("chain.%d.%p=main.holdLoop write\n", id, mu)
	}
	p.park(facts)
}

//go:noinline
func holdNotTaken(p *parker, cond bool) {
	if cond {
		notTaken.Lock()
		defer notTaken.Unlock()
	}
	p.park("")
}

//go:noinline
func holdOtherDefer(p *parker) {
	defer otherDone.Add(1)
	p.park("")
}

//go:noinline
func lockAndRelease() {
	released.Lock()
	defer released.Unlock()
	otherDone.Add(1)
}

//go:noinline
func holdReleased(p *parker) {
	lockAndRelease()
	p.park("")
}

func main() {
	p := &parker{parked: make(chan string), release: make(chan struct{})}
	s := &store{name: "s"}
	closureMu := new(sync.Mutex)
	loopLocks := []*sync.Mutex{new(sync.Mutex), new(sync.Mutex), new(sync.Mutex)}
	cond := len(os.Args) > 5 // false: the conditional defer is never reached
	holders := []struct {
		name string
		run  func()
	}{
		{"main.holdGlobal", func() { holdGlobal(p) }},
		{"main.(*store).holdField", func() { s.holdField(p) }},
		{"main.holdRead", func() { holdRead(p) }},
		{"main.holdWrite", func() { holdWrite(p) }},
		{"main.(*store).holdFieldRead", func() { s.holdFieldRead(p) }},
		{"main.holdTwo", func() { holdTwo(p) }},
		{"main.holdClosure", func() { holdClosure(p, closureMu) }},
		{"main.holdClosureGlobal", func() { holdClosureGlobal(p) }},
		{"main.holdLoop", func() { holdLoop(p, loopLocks) }},
		{"main.holdNotTaken", func() { holdNotTaken(p, cond) }},
		{"main.holdOtherDefer", func() { holdOtherDefer(p) }},
		{"main.holdReleased", func() { holdReleased(p) }},
	}
	fmt.Printf("pid=%d\n", os.Getpid())
	for _, h := range holders {
		h := h
		done := make(chan int)
		go func() {
			id := goid()
			done <- id
			h.run()
		}()
		id := <-done
		facts := <-p.parked
		fmt.Print(facts)
		fmt.Printf("park.%d=%s\n", id, h.name)
	}
	fmt.Println("ready")
	time.Sleep(120 * time.Second)
	close(p.release)
}
