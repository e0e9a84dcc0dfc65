// heap_locks: locks inside heap objects, taken in the shapes real services use, for the
// static lock names (`main.Store.mu`) read from DWARF. Each function below takes one
// kind of lock through one shape; the test (goprobe_go_binaries.rs) expects the name in
// the comment above it at every lock site and lock call of that function.
//
// Usage: heap_locks [writers START_MS]
//
//	no arguments: prints `offset.TYPE.FIELD=N` (where each lock sits in its struct),
//	              takes each lock once and exits.
//	writers:      prints `pid=N`, `lock.rw=0x…` (&s.rw of a heap Store) and `ready`, waits
//	              START_MS, then 4 goroutines call update (RWMutex.Lock, never inlined)
//	              in a loop for 2 s, then it prints `done` and idles until 120 s.
package main

import (
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"
	"unsafe"
)

// Store: a mutex and an RWMutex, neither at offset 0.
type Store struct {
	name string
	data map[string]int
	mu   sync.Mutex
	rw   sync.RWMutex
}

// Shard and Table: a lock in an array element of a nested struct.
type Shard struct {
	n  int
	mu sync.Mutex
}

type Table struct {
	name   string
	shards [4]Shard
}

// Counter embeds its mutex.
type Counter struct {
	n int
	sync.Mutex
}

// main.Store.mu: a method on the receiver, Lock inlined.
//
//go:noinline
func (s *Store) Put(k string, v int) {
	s.mu.Lock()
	s.data[k] = v
	s.mu.Unlock()
}

// main.Store.rw: RLock inlined.
//
//go:noinline
func (s *Store) Get(k string) int {
	s.rw.RLock()
	v := s.data[k]
	s.rw.RUnlock()
	return v
}

// main.Store.rw: a plain function, RWMutex.Lock called (never inlined).
//
//go:noinline
func update(s *Store, k string) {
	s.rw.Lock()
	s.data[k]++
	s.rw.Unlock()
}

// main.Table.shards[2].mu: an element of an array field.
//
//go:noinline
func (t *Table) Bump() {
	t.shards[2].mu.Lock()
	t.shards[2].n++
	t.shards[2].mu.Unlock()
}

// main.Counter.Mutex: the embedded mutex.
//
//go:noinline
func (c *Counter) Inc() {
	c.Lock()
	c.n++
	c.Unlock()
}

// writers: contention on a heap RWMutex taken only through the out-of-line RWMutex.Lock.
func writers(startMS int) {
	t0 := time.Now()
	s := &Store{name: "s", data: map[string]int{}}
	fmt.Printf("pid=%d\nlock.rw=%p\nready\n", os.Getpid(), &s.rw)
	time.Sleep(time.Duration(startMS) * time.Millisecond)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			until := time.Now().Add(2 * time.Second)
			for time.Now().Before(until) {
				update(s, "k")
			}
		}()
	}
	wg.Wait()
	fmt.Println("done")
	for time.Since(t0) < 120*time.Second {
		time.Sleep(100 * time.Millisecond)
	}
}

func main() {
	if len(os.Args) == 3 && os.Args[1] == "writers" {
		startMS, err := strconv.Atoi(os.Args[2])
		if err != nil {
			fmt.Fprintln(os.Stderr, "usage: heap_locks [writers START_MS]")
			os.Exit(2)
		}
		writers(startMS)
		return
	}
	s := &Store{name: "s", data: map[string]int{}}
	t := &Table{name: "t"}
	c := &Counter{}
	// Where each lock sits in its struct: what a stripped build's names give instead of
	// the field (`main.Store+0x18`).
	fmt.Printf("offset.main.Store.mu=%d\n", unsafe.Offsetof(s.mu))
	fmt.Printf("offset.main.Store.rw=%d\n", unsafe.Offsetof(s.rw))
	fmt.Printf("offset.main.Table.shards[2].mu=%d\n",
		unsafe.Offsetof(t.shards)+2*unsafe.Sizeof(t.shards[0])+unsafe.Offsetof(t.shards[0].mu))
	fmt.Printf("offset.main.Counter.Mutex=%d\n", unsafe.Offsetof(c.Mutex))
	s.Put("a", 1)
	update(s, "a")
	t.Bump()
	c.Inc()
	fmt.Fprintln(os.Stderr, s.Get("a"), t.shards[2].n, c.n)
}
