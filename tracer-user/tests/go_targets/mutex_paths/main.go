// mutex_paths: a few goroutines contend on a sync.Mutex and a sync.RWMutex so that the
// lock slow paths (lockSlow, unlockSlow, rUnlockSlow, the runtime semaphores) are linked
// in and exercised. Used by tests/goprobe_go_binaries.rs; prints only a total.
package main

import (
	"fmt"
	"sync"
)

type counter struct {
	mu sync.Mutex
	n  int
}

type table struct {
	mu sync.RWMutex
	m  map[int]int
}

//go:noinline
func bump(c *counter) {
	c.mu.Lock()
	c.n++
	c.mu.Unlock()
}

//go:noinline
func tryBump(c *counter) bool {
	if c.mu.TryLock() {
		c.n++
		c.mu.Unlock()
		return true
	}
	return false
}

//go:noinline
func read(t *table, k int) int {
	t.mu.RLock()
	v := t.m[k]
	t.mu.RUnlock()
	return v
}

//go:noinline
func write(t *table, k, v int) {
	t.mu.Lock()
	t.m[k] = v
	t.mu.Unlock()
}

func main() {
	c := &counter{}
	t := &table{m: make(map[int]int)}
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 20000; i++ {
				bump(c)
				tryBump(c)
				if i%8 == 0 {
					write(t, i%64, g)
				} else {
					_ = read(t, i%64)
				}
			}
		}(g)
	}
	wg.Wait()
	fmt.Println("total", c.n >= 80000)
}
