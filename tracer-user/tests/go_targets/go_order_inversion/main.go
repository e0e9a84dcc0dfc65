// go_order_inversion: the alert manager's deadlock before it happens (issue 18). A memory
// store and an alert store, each with its own mutex, allocated on the heap as in the real
// service. Subscribe holds the memory store's mutex and registers the subscriber in the
// alert store (memStore.mu, then alertStore.mu); the alert store's GC runs a callback
// that drops the collected alerts from the memory store while still holding its own
// mutex (alertStore.mu, then memStore.mu). The two paths run on two goroutines that take
// turns (channels), so both orders are taken, ROUNDS times each, but never at the same
// time: the program never deadlocks, yet the two orders are a potential deadlock.
//
// Usage: go_order_inversion [-fixed] [-rounds N]
//
//	-fixed   the fix: the GC path takes memStore.mu before alertStore.mu too (both paths
//	         take the locks in the same order): no inversion.
//	-rounds  how many times each path runs (default 5).
//
// Prints key=value facts, then `ready`, then waits for SIGUSR1 (so a tracer can attach
// first), runs the rounds, prints `done`, and idles until killed (it exits by itself
// after 120 s):
//
//	pid=N                this process
//	goid.subscriber=N    goroutine id (as in the runtime's dumps) of the Subscribe path
//	goid.gc=N            goroutine id of the GC path
//	lock.mem_store=0x…   &memStore.mu
//	lock.alert_store=0x… &alertStore.mu
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// MemStore keeps the alerts in memory and who subscribed to them.
type MemStore struct {
	mu          sync.Mutex
	alerts      map[string]int
	subscribers int
	alertStore  *AlertStore
}

// AlertStore keeps the alerts' state and collects the resolved ones; onGC is called with
// what it collected, with its mutex still held.
type AlertStore struct {
	mu        sync.Mutex
	listeners map[int]bool
	resolved  map[string]int
	onGC      func(collected []string)
}

// Subscribe registers a listener: memStore.mu, then (in listen) alertStore.mu.
//
//go:noinline
func (m *MemStore) Subscribe() int {
	m.mu.Lock()
	m.subscribers++
	id := m.subscribers
	m.alertStore.listen(id)
	m.mu.Unlock()
	return id
}

// listen takes alertStore.mu, while the caller holds memStore.mu.
//
//go:noinline
func (a *AlertStore) listen(id int) {
	a.mu.Lock()
	a.listeners[id] = true
	a.mu.Unlock()
}

// GC collects resolved alerts and hands them to the callback under alertStore.mu: the
// callback (MemStore.drop) then takes memStore.mu, the inverse order of Subscribe.
//
//go:noinline
func (a *AlertStore) GC() {
	a.mu.Lock()
	collected := a.collectLocked()
	a.onGC(collected)
	a.mu.Unlock()
}

// GCFixed is the fix: the memory store's mutex first, like Subscribe, then the alert
// store's.
//
//go:noinline
func (a *AlertStore) GCFixed(m *MemStore) {
	m.mu.Lock()
	a.mu.Lock()
	m.dropLocked(a.collectLocked())
	a.mu.Unlock()
	m.mu.Unlock()
}

//go:noinline
func (a *AlertStore) collectLocked() []string {
	var collected []string
	for k := range a.resolved {
		collected = append(collected, k)
		delete(a.resolved, k)
	}
	return collected
}

// drop is the GC callback: it takes memStore.mu.
//
//go:noinline
func (m *MemStore) drop(collected []string) {
	m.mu.Lock()
	m.dropLocked(collected)
	m.mu.Unlock()
}

//go:noinline
func (m *MemStore) dropLocked(collected []string) {
	for _, k := range collected {
		delete(m.alerts, k)
	}
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

// subscriber runs the Subscribe path once per turn.
//
//go:noinline
func subscriber(m *MemStore, ids chan<- int64, turns <-chan struct{}, done chan<- struct{}) {
	ids <- goid()
	for range turns {
		m.Subscribe()
		done <- struct{}{}
	}
}

// collector runs the GC path once per turn (the fixed one with -fixed).
//
//go:noinline
func collector(a *AlertStore, m *MemStore, fixed bool, ids chan<- int64, turns <-chan struct{}, done chan<- struct{}) {
	ids <- goid()
	for range turns {
		a.mu.Lock()
		a.resolved["alert"+strconv.Itoa(len(a.listeners))] = 1
		a.mu.Unlock()
		if fixed {
			a.GCFixed(m)
		} else {
			a.GC()
		}
		done <- struct{}{}
	}
}

func fact(key string, value interface{}) {
	fmt.Printf("%s=%v\n", key, value)
}

func main() {
	fixed := flag.Bool("fixed", false, "take the locks in the same order on both paths")
	rounds := flag.Int("rounds", 5, "how many times each path runs")
	flag.Parse()
	if *rounds < 1 || flag.NArg() != 0 {
		flag.Usage()
		os.Exit(2)
	}
	t0 := time.Now()
	start := make(chan os.Signal, 1)
	signal.Notify(start, syscall.SIGUSR1)

	memStore := &MemStore{alerts: make(map[string]int)}
	alertStore := &AlertStore{listeners: make(map[int]bool), resolved: make(map[string]int)}
	memStore.alertStore = alertStore
	alertStore.onGC = memStore.drop

	subscriberID := make(chan int64, 1)
	gcID := make(chan int64, 1)
	subscriberTurn := make(chan struct{})
	gcTurn := make(chan struct{})
	turnDone := make(chan struct{})
	go subscriber(memStore, subscriberID, subscriberTurn, turnDone)
	go collector(alertStore, memStore, *fixed, gcID, gcTurn, turnDone)

	fact("pid", os.Getpid())
	fact("fixed", *fixed)
	fact("goid.subscriber", <-subscriberID)
	fact("goid.gc", <-gcID)
	fact("lock.mem_store", fmt.Sprintf("%p", &memStore.mu))
	fact("lock.alert_store", fmt.Sprintf("%p", &alertStore.mu))
	fmt.Println("ready")

	<-start
	for r := 0; r < *rounds; r++ {
		subscriberTurn <- struct{}{}
		<-turnDone
		gcTurn <- struct{}{}
		<-turnDone
	}
	fmt.Println("done")

	// The goroutines stay parked on their turn channels; main keeps sleeping (so the
	// runtime's "all goroutines are asleep" check never fires).
	for time.Since(t0) < 120*time.Second {
		time.Sleep(100 * time.Millisecond)
	}
	fmt.Fprintln(os.Stderr, "go_order_inversion: 120 s timeout, exiting")
	os.Exit(0)
}
