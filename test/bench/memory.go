//go:build e2e

package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// memory is VmRSS and VmHWM of a process, in bytes.
type memory struct{ RSS, HWM int64 }

func readMemory(pid int) (memory, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memory{}, err
	}
	defer f.Close()
	var m memory
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(fields[1], 10, 64)
		switch fields[0] {
		case "VmRSS:":
			m.RSS = kb * 1024
		case "VmHWM:":
			m.HWM = kb * 1024
		}
	}
	return m, sc.Err()
}

// sampleRSS reads the process's VmRSS every 100 ms until the returned stop is called, which
// returns the highest value read.
func sampleRSS(pid int) (stop func() int64) {
	var highest int64
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			if m, err := readMemory(pid); err == nil {
				highest = max(highest, m.RSS)
			}
			select {
			case <-quit:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return func() int64 {
		close(quit)
		<-done
		return highest
	}
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
