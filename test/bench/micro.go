//go:build e2e

package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"time"
)

// benchRun is one line of `go test -bench` output.
type benchRun struct {
	Pkg, Name string
	N         int
	Metrics   map[string]float64 // unit → value ("ns/op", "B/op", "allocs/op", "api-calls/op"…)
}

// benchStat is the median run (by ns/op) of one benchmark over -count runs.
type benchStat struct {
	benchRun
	Runs       int
	MinNs      float64
	MaxNs      float64
	AllNsPerOp []float64
}

// microResult is the output of the Go benchmarks.
type microResult struct {
	Commands []string
	CPU      string // the "cpu:" line of go test (CPUID brand string)
	Took     time.Duration
	Stats    map[string]*benchStat // "pkg.Name" (Name without the -GOMAXPROCS suffix)
	Output   string
}

// runMicro runs the Go benchmarks and parses their output: the fast ones for a duration, the
// 5,000-node ones for a number of iterations (one op takes a sizeable fraction of a second).
func runMicro(ctx context.Context, count int, benchtime, bigtime string) (*microResult, error) {
	res := &microResult{Stats: map[string]*benchStat{}}
	var all bytes.Buffer
	start := time.Now()
	for _, args := range [][]string{
		// -p 1: one package at a time, so that no compilation runs beside a benchmark.
		{"test", "-p", "1", "-run", "^$", "-bench", "IrrelevantEvent|HealthyWorkflowPodUpdate", "-benchmem", "-count", strconv.Itoa(count), "-benchtime", benchtime, "./test/bench/micro/"},
		{"test", "-p", "1", "-run", "^$", "-bench", "Compressed5000", "-benchmem", "-count", strconv.Itoa(count), "-benchtime", bigtime, "./test/bench/micro/"},
	} {
		res.Commands = append(res.Commands, "go "+strings.Join(quoteArgs(args), " "))
		cmd := exec.CommandContext(ctx, "go", args...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		all.Write(out.Bytes())
		if err != nil {
			res.Took, res.Output = time.Since(start), all.String()
			return res, fmt.Errorf("%s: %v\n%s", res.Commands[len(res.Commands)-1], err, out.String())
		}
	}
	res.Took, res.Output = time.Since(start), all.String()
	for _, l := range strings.Split(res.Output, "\n") {
		if v, ok := strings.CutPrefix(l, "cpu: "); ok {
			res.CPU = strings.TrimSpace(v)
		}
	}
	runs := parseBench(res.Output)
	by := map[string][]benchRun{}
	for _, r := range runs {
		by[r.Pkg+"."+r.Name] = append(by[r.Pkg+"."+r.Name], r)
	}
	for k, rs := range by {
		sort.Slice(rs, func(i, j int) bool { return rs[i].Metrics["ns/op"] < rs[j].Metrics["ns/op"] })
		st := &benchStat{benchRun: rs[len(rs)/2], Runs: len(rs), MinNs: rs[0].Metrics["ns/op"], MaxNs: rs[len(rs)-1].Metrics["ns/op"]}
		for _, r := range rs {
			st.AllNsPerOp = append(st.AllNsPerOp, r.Metrics["ns/op"])
		}
		res.Stats[k] = st
	}
	return res, nil
}

// quoteArgs quotes the arguments a shell would split or expand.
func quoteArgs(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if strings.ContainsAny(a, "^$|*? ") {
			a = "'" + a + "'"
		}
		out[i] = a
	}
	return out
}

func parseBench(out string) []benchRun {
	var runs []benchRun
	pkg := ""
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if p, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = strings.TrimSpace(p)
			continue
		}
		if !strings.HasPrefix(line, "Benchmark") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		n, err := strconv.Atoi(f[1])
		if err != nil {
			continue
		}
		name := f[0]
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			name = name[:i]
		}
		r := benchRun{Pkg: pkg, Name: name, N: n, Metrics: map[string]float64{}}
		for i := 2; i+1 < len(f); i += 2 {
			if v, err := strconv.ParseFloat(f[i], 64); err == nil {
				r.Metrics[f[i+1]] = v
			}
		}
		runs = append(runs, r)
	}
	return runs
}

// get returns the stat of pkg's benchmark name, or nil.
func (m *microResult) get(pkg, name string) *benchStat {
	if m == nil {
		return nil
	}
	return m.Stats["function/"+pkg+"."+name]
}

// machine describes where the run happened.
type machine struct {
	NProc     int
	CPU       string
	MemTotal  string
	GoVersion string
	Kernel    string
	Date      time.Time
	GitHead   string
	GitDirty  []string // modified production files at run time (other engineers' work in progress)
}

func readMachine(nproc int) machine {
	m := machine{NProc: nproc, Date: time.Now().UTC()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				m.CPU = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "MemTotal:"); ok {
				kb, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
				m.MemTotal = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
			}
		}
	}
	m.GoVersion = strings.TrimSpace(output("go", "version"))
	m.Kernel = strings.TrimSpace(output("uname", "-sr"))
	m.GitHead = "commit " + strings.TrimSpace(output("git", "rev-parse", "--short", "HEAD"))
	for _, l := range strings.Split(output("git", "status", "--porcelain", "--", ".", ":!docs", ":!test/bench"), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			m.GitDirty = append(m.GitDirty, l)
		}
	}
	return m
}

func output(name string, args ...string) string {
	out, _ := exec.Command(name, args...).Output()
	return string(out)
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
