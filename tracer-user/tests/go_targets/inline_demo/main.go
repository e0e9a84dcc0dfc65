// inline_demo is the Go target of tests/gosym_go_binaries.rs: it prints, from the
// runtime's own tables, facts the Rust pclntab parser must reproduce (function entries,
// file:line of call sites, and the name of a function the compiler inlined).
package main

import (
	"fmt"
	"reflect"
	"runtime"
	"sync"
)

var (
	mu   sync.Mutex
	hits int
)

// report prints the frames above it as the runtime sees them. Caller(1) is
// lockedWork, Caller(2) the inlined withLock, Caller(3) main.main at the call
// site of withLock.
//
//go:noinline
func report() {
	for skip, site := range []string{"work", "inlined", "caller"} {
		pc, file, line, ok := runtime.Caller(skip + 1)
		if !ok {
			panic("runtime.Caller failed")
		}
		fmt.Printf("site=%s pc=%#x func=%s file=%s line=%d\n",
			site, pc, runtime.FuncForPC(pc).Name(), file, line)
	}
}

// lockedWork takes the mutex (sync.(*Mutex).Lock's fast path is itself inlined
// here) and reports where it was called from.
//
//go:noinline
func lockedWork(n int) {
	mu.Lock()
	hits += n
	report()
	mu.Unlock()
}

// withLock has a single call, so it is cheap enough for the compiler to inline
// into main: the inlined call site the parser must recover.
func withLock(n int) {
	lockedWork(n)
}

func printEntry(f interface{}) {
	fn := runtime.FuncForPC(reflect.ValueOf(f).Pointer())
	fmt.Printf("func=%s entry=%#x\n", fn.Name(), fn.Entry())
}

func main() {
	printEntry(lockedWork)
	printEntry(report)
	printEntry(main)
	withLock(1)
}
