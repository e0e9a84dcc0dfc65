// go_exec contends a sync.Mutex, then executes another program (issue 16: names after
// an exec). Prints pid= and ready, waits 1.5 s (for a tracer to attach), has four
// goroutines contend main.mu for a while, prints exec and executes os.Args[1] with
// os.Args[1:] (the abba C target in the tests, which prints its own facts and deadlocks).
package main

import (
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"
)

var mu sync.Mutex

func main() {
	fmt.Printf("pid=%d\n", os.Getpid())
	fmt.Println("ready")
	time.Sleep(1500 * time.Millisecond)
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 200; j++ {
				mu.Lock()
				time.Sleep(time.Millisecond)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	fmt.Println("exec")
	err := syscall.Exec(os.Args[1], os.Args[1:], os.Environ())
	fmt.Fprintln(os.Stderr, "exec:", err)
	os.Exit(1)
}
