// go_chan_hot: contends one channel's runtime lock. 8 goroutines try to send on a
// buffered channel and 8 try to receive from it, without blocking (select with default),
// in tight loops, on 8 Ps: more Ms than CPUs, so the runtime lock inside the channel
// (`hchan.lock`, taken by `runtime.lock`) is often held by a preempted thread, and the
// others sleep on its futex word. No sync.Mutex is involved: the only lock waits are the
// runtime's.
//
// Usage: go_chan_hot SECONDS
//
// Prints key=value facts, then `ready`:
//
//	pid=N        this process
//	chan=0x…     the channel (its `hchan`, whose `lock` field is the contended word)
//
// Exits after SECONDS.
package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"time"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: go_chan_hot SECONDS")
		os.Exit(2)
	}
	seconds, err := strconv.Atoi(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "go_chan_hot: SECONDS:", err)
		os.Exit(2)
	}
	runtime.GOMAXPROCS(8)
	ch := make(chan int, 64)
	fmt.Printf("pid=%d\n", os.Getpid())
	fmt.Printf("chan=%p\n", ch)
	fmt.Println("ready")
	for i := 0; i < 8; i++ {
		go func() {
			for {
				select {
				case ch <- 1:
				default:
				}
			}
		}()
		go func() {
			for {
				select {
				case <-ch:
				default:
				}
			}
		}()
	}
	time.Sleep(time.Duration(seconds) * time.Second)
}
