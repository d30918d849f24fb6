//go:build e2e

package main

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"function/config"
	"function/internal/localcluster"
	"function/internal/localcluster/scenario"
)

// newInProcess builds the function in the bench process as function.Start builds it, its every
// API call recorded (scenario.NewInProcess), logging into the stack's log directory as logName.
func newInProcess(c *localcluster.Cluster, logName string, tune func(*config.Config)) (*scenario.InProcess, error) {
	return scenario.NewInProcess(scenario.InProcessOptions{Kubeconfig: c.Kubeconfig(), Tune: tune, LogPath: filepath.Join(c.LogDir(), logName)})
}

// latencyResult is figures 2 and 3.
type latencyResult struct {
	Argo      string
	Workflows int
	SetupTook time.Duration
	Deletions []deletion
	Deleted   map[string]time.Time
	Missing   int // delete events not received within the bound
	Repaired  int // task results completed (checked on the API server afterwards)
	// Sequences counts the repairs by the call sequence of the repairing event; FollowUps the
	// other events of the same deletions by theirs (type: sequence).
	Sequences  map[string]int
	FollowUps  map[string]int
	SinkTypes  map[string]int
	SinkStatus map[int]int
	OtherCalls int
	LogPath    string
}

// runLatency deletes the pods of the victims one at a time; the real adapter delivers each delete
// event to the in-process sink, whose handler repairs it. Each repair's calls and times are kept.
func runLatency(ctx context.Context, e *env, s *sink, ns string, vs []victim) (*latencyResult, error) {
	res := &latencyResult{Workflows: len(vs), Deleted: map[string]time.Time{}, Sequences: map[string]int{}, FollowUps: map[string]int{}}
	for i, v := range vs {
		ch := s.expect(v.Pod)
		t0 := time.Now() // the DELETE is sent (the watch may deliver the event before its answer arrives)
		if _, err := e.deletePod(ctx, ns, v.Pod); err != nil {
			return nil, fmt.Errorf("deleting pod %s: %w", v.Pod, err)
		}
		res.Deleted[v.Pod] = t0
		select {
		case d := <-ch:
			res.Deletions = append(res.Deletions, d)
			rep := d.repair()
			res.Sequences[keys(rep.Calls)]++
			for _, ev := range d.Events {
				if ev.Recv != rep.Recv {
					res.FollowUps[strings.TrimPrefix(ev.Type, "dev.knative.apiserver.resource.")+": "+keys(ev.Calls)]++
				}
			}
		case <-time.After(30 * time.Second):
			res.Missing++
			e.logf("latency: no delete event for pod %s within 30 s", v.Pod)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if (i+1)%50 == 0 {
			e.logf("latency: %d/%d repairs", i+1, len(vs))
		}
	}
	for _, v := range vs {
		if e.repairedOrDone(ctx, ns, v) {
			res.Repaired++
		}
	}
	s.mu.Lock()
	res.SinkTypes, res.SinkStatus, res.OtherCalls = copyMap(s.byType), copyMap(s.status), len(s.other)
	s.mu.Unlock()
	return res, nil
}

func copyMap[K comparable, V any](m map[K]V) map[K]V {
	out := make(map[K]V, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// durations helpers

func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return -1
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	// nearest rank
	rank := int(p/100*float64(len(s))+0.999999) - 1
	if rank < 0 {
		rank = 0
	}
	if rank >= len(s) {
		rank = len(s) - 1
	}
	return s[rank]
}

func maxDur(ds []time.Duration) time.Duration {
	var m time.Duration = -1
	for _, d := range ds {
		if d > m {
			m = d
		}
	}
	return m
}

func ms(d time.Duration) string {
	if d < 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
}

func secs(d time.Duration) string {
	if d < 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}
