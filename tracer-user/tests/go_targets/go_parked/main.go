// go_parked: lock trouble that is already there when the tracer attaches, held with the
// `mu.Lock(); defer mu.Unlock()` idiom (the pending deferred unlock on the holder's stack
// is what names it).
//
// Usage: go_parked MODE [IDLE [READERS]]
//
//	IDLE (default 0): that many more goroutines, parked on a channel forever, as a busy
//	service has (for the benchmark of a snapshot's cost).
//	READERS (held only, default 300): goroutines parked in RLock behind the held lock.
//
//	MODE abba:     the alerting incident: Provider.Refresh holds provider.mu and takes
//	               store.mu; Store.GC holds store.mu and takes provider.mu. Both use
//	               defer; a rendezvous makes them deadlock, forever.
//	MODE held:     a goroutine write-locks registry.mu with a deferred unlock and then
//	               blocks on a channel forever (inside the defer-protected section);
//	               READERS goroutines then park in RLock and one writer in Lock.
//	MODE twolocks: one goroutine takes a.mu and b.mu (a Mutex and an RWMutex for
//	               writing), both with deferred unlocks, then blocks forever; three
//	               goroutines wait for each lock.
//	MODE readheld: three goroutines read-lock registry.mu with deferred RUnlocks and
//	               block forever inside; a writer then parks in Lock, waiting for them to
//	               leave (draining), and five more readers park behind the writer.
//	MODE ordered:  the corrected abba: both paths take provider.mu before store.mu, with
//	               defers; they loop for the rest of the run without deadlocking.
//
// The trouble forms at once; once every goroutine involved is parked the program prints
// its facts, then `ready`:
//
//	pid=N
//	mode=MODE
//	goid.writer=N, goid.gc=N     (abba, ordered) the Refresh and GC goroutines
//	goid.holder=N                (held, twolocks) the goroutine holding the lock(s)
//	goid.reader1..3=N            (readheld) the goroutines holding the read lock
//	lock.provider=0x…, lock.store=0x…, lock.registry=0x…, lock.a=0x…, lock.b=0x…
//	readers=N, writers=N         (held, readheld) goroutines parked in RLock and Lock
//	idle=N                       goroutines parked on a channel
//
// main keeps sleeping (so the runtime's "all goroutines are asleep" check never fires)
// and the process exits by itself after 120 s.
package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Readers parked behind the held registry lock, unless READERS says otherwise.
const defaultReaders = 300

type Provider struct {
	mu    sync.Mutex
	cache map[string]int
	store *Store
}

type Store struct {
	mu       sync.Mutex
	data     map[string]int
	provider *Provider
}

type Registry struct {
	mu       sync.RWMutex
	versions map[string]int
}

type Pair struct {
	a struct {
		mu sync.Mutex
		n  int
	}
	b struct {
		mu sync.RWMutex
		n  int
	}
}

var forever = make(chan struct{})

// goid is the running goroutine's id, as the runtime's own dumps number it.
func goid() uint64 {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	fields := strings.Fields(strings.TrimPrefix(string(buf), "goroutine "))
	id, _ := strconv.ParseUint(fields[0], 10, 64)
	return id
}

// Refresh: provider.mu, then store.mu, both released by defers.
//
//go:noinline
func (p *Provider) Refresh(key string, v int, holds chan<- struct{}, other <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cache[key] = v
	if holds != nil {
		close(holds)
		<-other
	}
	p.store.put(key, v)
}

//go:noinline
func (s *Store) put(key string, v int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.data[key] = v
}

// GC: store.mu, then provider.mu (the inversion), or provider.mu first when ordered.
//
//go:noinline
func (s *Store) GC(ordered bool, holds chan<- struct{}, other <-chan struct{}) {
	if ordered {
		s.provider.mu.Lock()
		defer s.provider.mu.Unlock()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if holds != nil {
		close(holds)
		<-other
	}
	if !ordered {
		s.provider.evict("k")
	}
	delete(s.data, "k")
}

//go:noinline
func (p *Provider) evict(key string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.cache, key)
}

// Hold takes the write lock, defers its release, and blocks forever inside.
//
//go:noinline
func (r *Registry) Hold(ready chan<- uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ready <- goid()
	<-forever
}

//go:noinline
func (r *Registry) Get(key string) int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.versions[key]
}

//go:noinline
func (r *Registry) Set(key string, v int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.versions[key] = v
}

// HoldRead takes the read lock, defers its release, and blocks forever inside.
//
//go:noinline
func (r *Registry) HoldRead(ready chan<- uint64) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	ready <- goid()
	<-forever
}

//go:noinline
func (p *Pair) HoldBoth(ready chan<- uint64) {
	p.a.mu.Lock()
	defer p.a.mu.Unlock()
	p.b.mu.Lock()
	defer p.b.mu.Unlock()
	ready <- goid()
	<-forever
}

func main() {
	if len(os.Args) < 2 || len(os.Args) > 4 {
		fmt.Fprintln(os.Stderr, "usage: go_parked abba|held|readheld|twolocks|ordered [IDLE [READERS]]")
		os.Exit(2)
	}
	mode := os.Args[1]
	readers := defaultReaders
	if len(os.Args) == 4 {
		n, err := strconv.Atoi(os.Args[3])
		if err != nil || n < 0 || mode != "held" {
			fmt.Fprintln(os.Stderr, "READERS must be a count of goroutines, for mode held only")
			os.Exit(2)
		}
		readers = n
	}
	if len(os.Args) >= 3 {
		idle, err := strconv.Atoi(os.Args[2])
		if err != nil || idle < 0 {
			fmt.Fprintln(os.Stderr, "IDLE must be a count of goroutines")
			os.Exit(2)
		}
		for i := 0; i < idle; i++ {
			go func() { <-forever }()
		}
	}
	fmt.Printf("pid=%d\nmode=%s\n", os.Getpid(), mode)
	switch mode {
	case "abba", "ordered":
		p := &Provider{cache: map[string]int{}}
		s := &Store{data: map[string]int{}, provider: p}
		p.store = s
		ids := make(chan [2]uint64, 2)
		if mode == "abba" {
			writerHolds, gcHolds := make(chan struct{}), make(chan struct{})
			go func() { ids <- [2]uint64{0, goid()}; p.Refresh("k", 1, writerHolds, gcHolds) }()
			go func() { ids <- [2]uint64{1, goid()}; s.GC(false, gcHolds, writerHolds) }()
		} else {
			go func() {
				ids <- [2]uint64{0, goid()}
				for {
					p.Refresh("k", 1, nil, nil)
				}
			}()
			go func() {
				ids <- [2]uint64{1, goid()}
				for {
					s.GC(true, nil, nil)
				}
			}()
		}
		names := [2]string{"writer", "gc"}
		for i := 0; i < 2; i++ {
			id := <-ids
			fmt.Printf("goid.%s=%d\n", names[id[0]], id[1])
		}
		fmt.Printf("lock.provider=%p\nlock.store=%p\n", &p.mu, &s.mu)
	case "held":
		r := &Registry{versions: map[string]int{}}
		held := make(chan uint64)
		go r.Hold(held)
		fmt.Printf("goid.holder=%d\n", <-held)
		for i := 0; i < readers; i++ {
			go r.Get("k")
		}
		go r.Set("k", 2)
		fmt.Printf("lock.registry=%p\nreaders=%d\nwriters=1\n", &r.mu, readers)
	case "readheld":
		r := &Registry{versions: map[string]int{}}
		held := make(chan uint64)
		for i := 1; i <= 3; i++ {
			go r.HoldRead(held)
			fmt.Printf("goid.reader%d=%d\n", i, <-held)
		}
		go r.Set("k", 2)
		// The writer parks waiting for the three readers before the others come.
		time.Sleep(100 * time.Millisecond)
		for i := 0; i < 5; i++ {
			go r.Get("k")
		}
		fmt.Printf("lock.registry=%p\nreaders=5\nwriters=1\n", &r.mu)
	case "twolocks":
		p := &Pair{}
		held := make(chan uint64)
		go p.HoldBoth(held)
		fmt.Printf("goid.holder=%d\n", <-held)
		for i := 0; i < 3; i++ {
			go func() { p.a.mu.Lock(); p.a.n++; p.a.mu.Unlock() }()
			go func() { p.b.mu.RLock(); _ = p.b.n; p.b.mu.RUnlock() }()
		}
		fmt.Printf("lock.a=%p\nlock.b=%p\n", &p.a.mu, &p.b.mu)
	default:
		fmt.Fprintln(os.Stderr, "unknown mode", mode)
		os.Exit(2)
	}
	if len(os.Args) >= 3 {
		fmt.Printf("idle=%s\n", os.Args[2])
	}
	// Let every goroutine reach its lock and park.
	time.Sleep(500 * time.Millisecond)
	fmt.Println("ready")
	time.Sleep(120 * time.Second)
}
