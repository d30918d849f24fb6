//go:build e2e

package main

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"function/clients"
	"function/config"
	"function/handlers"
	"function/wiring"
	"function/workflowmeta"
)

// inProcess is the function's handler built in the bench process exactly as function.Start
// builds it (config.Load, clients.RESTConfig, clients.New, wiring.FromClients), its clients wrapped in
// the counting transport.
type inProcess struct {
	h       *handlers.Handler
	cfg     *config.Config
	total   *atomic.Int64
	outside *callLog
}

func newInProcess(kubeconfig, logPath string, tune func(*config.Config)) (*inProcess, error) {
	cfg, err := config.Load()
	if err != nil {
		return nil, err
	}
	if tune != nil {
		tune(cfg)
	}
	rc, err := clients.RESTConfig(clients.Options{Kubeconfig: kubeconfig, QPS: cfg.KubeQPS, Burst: cfg.KubeBurst, Timeout: cfg.EventTimeout, UserAgent: workflowmeta.Component})
	if err != nil {
		return nil, err
	}
	ip := &inProcess{cfg: cfg, total: &atomic.Int64{}, outside: &callLog{}}
	rc.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return &countingTransport{next: rt, total: ip.total, unattributed: ip.outside}
	})
	cs, err := clients.New(rc)
	if err != nil {
		return nil, err
	}
	log, err := fileLogger(cfg.LogLevel, logPath)
	if err != nil {
		return nil, err
	}
	ip.h = wiring.FromClients(cfg, cs, nil, log).Handler
	return ip, nil
}

// fileLogger is logs.New's configuration (zap production JSON, ISO8601 timestamps, no sampling)
// writing to a file instead of stderr.
func fileLogger(level, path string) (*zap.SugaredLogger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, err
	}
	cfg := zap.NewProductionConfig()
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	cfg.EncoderConfig.TimeKey = "timestamp"
	cfg.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	cfg.Sampling = nil
	cfg.OutputPaths, cfg.ErrorOutputPaths = []string{path}, []string{path}
	l, err := cfg.Build()
	if err != nil {
		return nil, err
	}
	return l.Sugar().Named("argo-disruption-handler"), nil
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

func keys(cs []call) string {
	var ks []string
	for _, c := range cs {
		k := c.Key()
		if c.Status >= 300 || c.Err != "" {
			k += fmt.Sprintf(" (%d%s)", c.Status, map[bool]string{true: " " + c.Err, false: ""}[c.Err != ""])
		}
		ks = append(ks, k)
	}
	return strings.Join(ks, ", ")
}

// patchedAt is when the task result patch (or create) was answered, zero if none.
func patchedAt(cs []call) (time.Time, bool) {
	for _, c := range cs {
		if c.Resource() == "workflowtaskresults" && (c.Method == http.MethodPatch || c.Method == http.MethodPost) && c.Status < 300 {
			return c.End, true
		}
	}
	return time.Time{}, false
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
