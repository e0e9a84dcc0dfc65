// lock_sites: a known set of sync.Mutex / sync.RWMutex call sites, each in its own
// noinline function, for tests/goprobe_go_binaries.rs (plan_go_lock_sites). The test
// keeps a table of which lock operations each main.* function inlines: change the two
// together. Prints only a checksum.
package main

import (
	"fmt"
	"sync"
)

// A global mutex. Go (1.19 and 1.25 at least) loads its address with a RIP-relative
// LEA and the atomics then go through that register, not RIP-relative themselves.
var gmu sync.Mutex
var gcount int

// A mutex at a non-zero offset in a heap object.
type box struct {
	pad [3]uint64
	mu  sync.Mutex
	n   int
}

type store struct {
	rw sync.RWMutex
	m  map[int]int
}

// Lock + Unlock of a global: one MutexLockFast, one MutexUnlock.
//
//go:noinline
func globalLock() {
	gmu.Lock()
	gcount++
	gmu.Unlock()
}

// Lock + Unlock of a struct field: one MutexLockFast, one MutexUnlock.
//
//go:noinline
func fieldLock(b *box) {
	b.mu.Lock()
	b.n++
	b.mu.Unlock()
}

// TryLock + Unlock: one MutexLockFast (TryLock's CAS), one MutexUnlock.
//
//go:noinline
func tryLock(b *box) bool {
	if b.mu.TryLock() {
		b.n++
		b.mu.Unlock()
		return true
	}
	return false
}

// Two mutexes, nested: two MutexLockFast, two MutexUnlock.
//
//go:noinline
func twoLocks(a, b *box) {
	a.mu.Lock()
	b.mu.Lock()
	a.n += b.n
	b.mu.Unlock()
	a.mu.Unlock()
}

// RLock + RUnlock: one RLockFast, one RUnlock.
//
//go:noinline
func readStore(s *store, k int) int {
	s.rw.RLock()
	v := s.m[k]
	s.rw.RUnlock()
	return v
}

// RWMutex.Lock/Unlock are not inlined: the sites are in sync.(*RWMutex).Lock/Unlock
// (RwLockFast, RwUnlock), none here.
//
//go:noinline
func writeStore(s *store, k, v int) {
	s.rw.Lock()
	s.m[k] = v
	s.rw.Unlock()
}

// Calls through the interface reach the out-of-line methods: no sites here.
//
//go:noinline
func viaLocker(l sync.Locker) {
	l.Lock()
	gcount++
	l.Unlock()
}

func main() {
	b1, b2 := &box{}, &box{}
	s := &store{m: make(map[int]int)}
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				globalLock()
				fieldLock(b1)
				tryLock(b2)
				twoLocks(b1, b2)
				if i%8 == 0 {
					writeStore(s, i%16, g)
				} else {
					_ = readStore(s, i%16)
				}
				viaLocker(&gmu)
				viaLocker(&s.rw)
				viaLocker(s.rw.RLocker())
			}
		}(g)
	}
	wg.Wait()
	fmt.Println("sum", gcount+b1.n+b2.n > 0)
}
