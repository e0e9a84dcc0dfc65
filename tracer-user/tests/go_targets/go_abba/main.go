// go_abba: the alerting-service incident. A provider caches alert rules and writes them
// through to a store (Provider.Refresh: provider.mu, then store.mu); the store's garbage
// collector tells the provider to evict what it dropped (Store.GC: store.mu, then
// provider.mu). Two goroutines running those paths at the same time deadlock (ABBA).
//
// Usage: go_abba MODE START_MS
//
//	MODE deadlock: a rendezvous makes both goroutines hold their first lock before they
//	               take the second: they deadlock, forever.
//	MODE heap:     the same deadlock between a provider and a store allocated on the heap
//	               at run time (as in a real service), not the globals.
//	MODE ordered:  the fix: the collector takes provider.mu before store.mu too. Both
//	               goroutines loop for ~2 s with contention, then `done` is printed.
//
// Prints key=value facts, then `ready`, waits START_MS, then starts the two paths:
//
//	pid=N              this process
//	mode=MODE
//	goid.writer=N      goroutine id (as in the runtime's dumps) of the Refresh path
//	goid.gc=N          goroutine id of the GC path
//	lock.provider=0x…  &provider.mu (the global main.provider, or the heap provider;
//	                   mu is its first field)
//	lock.store=0x…     &store.mu (the global main.store, or the heap store)
//	offset.provider.mu=N, offset.store.mu=N: where each mu sits in its struct
//
// main keeps sleeping (so the runtime's "all goroutines are asleep" check never fires) and
// the process exits by itself after 120 s.
package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"
)

// Provider caches alert rules and writes them through to its store.
type Provider struct {
	mu    sync.Mutex
	cache map[string]int
	store *Store
}

// Store persists them; its collector calls back into the provider.
type Store struct {
	mu       sync.Mutex
	data     map[string]int
	provider *Provider
}

var provider Provider
var store Store

// In deadlock mode each path closes its channel once it holds its first lock, then waits
// for the other's.
var (
	rendezvous  bool
	writerHolds = make(chan struct{})
	gcHolds     = make(chan struct{})
)

// Refresh updates a rule and writes it through to the store: provider.mu, then store.mu.
//
//go:noinline
func (p *Provider) Refresh(key string, v int) {
	p.mu.Lock()
	p.cache[key] = v
	if rendezvous {
		close(writerHolds)
		<-gcHolds
	}
	p.store.Put(key, v)
	p.mu.Unlock()
}

// Put stores one rule under store.mu.
//
//go:noinline
func (s *Store) Put(key string, v int) {
	s.mu.Lock()
	s.data[key] = v
	s.mu.Unlock()
}

// GC drops expired rules and calls back into the provider while still holding store.mu:
// store.mu, then provider.mu, the inverse order of Refresh.
//
//go:noinline
func (s *Store) GC() {
	s.mu.Lock()
	expired := s.collectLocked()
	if rendezvous {
		close(gcHolds)
		<-writerHolds
	}
	s.provider.Evict(expired)
	s.mu.Unlock()
}

// Evict drops rules from the provider's cache under provider.mu.
//
//go:noinline
func (p *Provider) Evict(keys []string) {
	p.mu.Lock()
	p.evictLocked(keys)
	p.mu.Unlock()
}

// GCOrdered is the fix: take provider.mu first, like Refresh, then store.mu.
//
//go:noinline
func (s *Store) GCOrdered() {
	s.provider.mu.Lock()
	s.mu.Lock()
	s.provider.evictLocked(s.collectLocked())
	s.mu.Unlock()
	s.provider.mu.Unlock()
}

//go:noinline
func (s *Store) collectLocked() []string {
	var expired []string
	for k, v := range s.data {
		if v%2 == 0 {
			expired = append(expired, k)
			delete(s.data, k)
		}
	}
	return expired
}

//go:noinline
func (p *Provider) evictLocked(keys []string) {
	for _, k := range keys {
		delete(p.cache, k)
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

// orderedFor is how long the goroutines loop in ordered mode.
const orderedFor = 2 * time.Second

// writer runs path A: Provider.Refresh (→ Store.Put).
//
//go:noinline
func writer(provider *Provider, ids chan<- int64, start <-chan struct{}, wg *sync.WaitGroup) {
	defer wg.Done()
	ids <- goid()
	<-start
	if rendezvous {
		provider.Refresh("rule", 1)
		return
	}
	until := time.Now().Add(orderedFor)
	for i := 0; time.Now().Before(until); i++ {
		provider.Refresh("rule"+strconv.Itoa(i%64), i)
	}
}

// gc runs path B: Store.GC (→ Provider.Evict), or in ordered mode Store.GCOrdered.
//
//go:noinline
func gc(store *Store, ids chan<- int64, start <-chan struct{}, wg *sync.WaitGroup) {
	defer wg.Done()
	ids <- goid()
	<-start
	if rendezvous {
		store.GC()
		return
	}
	until := time.Now().Add(orderedFor)
	for time.Now().Before(until) {
		store.GCOrdered()
	}
}

func fact(key string, value interface{}) {
	fmt.Printf("%s=%v\n", key, value)
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: go_abba deadlock|heap|ordered START_MS")
	os.Exit(2)
}

func main() {
	if len(os.Args) != 3 {
		usage()
	}
	mode := os.Args[1]
	p, s := &provider, &store
	switch mode {
	case "deadlock":
		rendezvous = true
	case "heap":
		rendezvous = true
		p, s = new(Provider), new(Store)
	case "ordered":
	default:
		usage()
	}
	startMS, err := strconv.Atoi(os.Args[2])
	if err != nil || startMS < 0 {
		usage()
	}
	t0 := time.Now()
	p.cache = make(map[string]int)
	p.store = s
	s.data = make(map[string]int)
	s.provider = p
	for i := 0; i < 64; i++ {
		s.data["rule"+strconv.Itoa(i)] = i
	}

	start := make(chan struct{})
	writerID := make(chan int64, 1)
	gcID := make(chan int64, 1)
	var wg sync.WaitGroup
	wg.Add(2)
	go writer(p, writerID, start, &wg)
	go gc(s, gcID, start, &wg)

	fact("pid", os.Getpid())
	fact("mode", mode)
	fact("goid.writer", <-writerID)
	fact("goid.gc", <-gcID)
	fact("lock.provider", fmt.Sprintf("%p", &p.mu))
	fact("lock.store", fmt.Sprintf("%p", &s.mu))
	fact("offset.provider.mu", unsafe.Offsetof(p.mu))
	fact("offset.store.mu", unsafe.Offsetof(s.mu))
	fmt.Println("ready")

	time.Sleep(time.Duration(startMS) * time.Millisecond)
	close(start)
	if !rendezvous {
		// (In deadlock mode nothing would ever be done: no goroutine waits for that.)
		go func() {
			wg.Wait()
			fmt.Println("done")
		}()
	}

	for time.Since(t0) < 120*time.Second {
		time.Sleep(100 * time.Millisecond)
	}
	fmt.Fprintln(os.Stderr, "go_abba: 120 s timeout, exiting")
	os.Exit(0)
}
