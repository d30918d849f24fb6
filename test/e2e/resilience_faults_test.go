//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"function/config"
	"function/internal/localcluster/apitap"
	"function/internal/localcluster/scenario"
)

// apiFaults puts an outage between the function and the API server from each call of a repair
// on, of each kind of fault: the answer must be 503 (the broker re-delivers), what is on the
// cluster exactly what reached the API server, and the re-delivered event must complete the
// repair, recorded once.
func (s *stack) apiFaults(t *testing.T) {
	ctx := context.Background()
	kinds := apitap.Faults
	const timeout = 2 * time.Second // ADH_EVENT_TIMEOUT for these deliveries
	proxy, viaProxy := s.faultProxy(t, 3*timeout)
	fn := s.inproc(t, "faults", viaProxy, func(c *config.Config) { c.EventTimeout = timeout }, nil)

	// The calls of one repair, measured on a spare victim without a fault: the outage starts at
	// each of them in turn (at most the first maxPositions).
	const maxPositions = 6
	vs := s.victims(t, []string{nsFault}, 1+len(kinds)*maxPositions, scenario.Force, true, true)
	if code, body := fn.deliver(ctx, vs[0].del); code != http.StatusOK {
		t.Fatalf("fault-free repair answered %d %q", code, body)
	}
	seq := proxy.Take()
	var names []string
	for _, p := range seq {
		names = append(names, p.Method+"-"+p.Resource())
	}
	t.Logf("the calls of one repair, through the proxy: %s", strings.Join(names, ", "))
	positions := min(len(seq), maxPositions)
	if positions < 3 {
		t.Fatalf("a repair made %d calls: %v", len(seq), names)
	}
	if o := s.outcomeOf(t, vs[0]); !o.complete() {
		t.Fatalf("fault-free repair: %+v", o)
	}

	i := 1
	for _, kind := range kinds {
		for n := 1; n <= positions; n++ {
			v := vs[i]
			i++
			t.Run(fmt.Sprintf("%s/at-%d-%s", kind, n, names[n-1]), func(t *testing.T) {
				proxy.Arm(kind, n)
				began := time.Now()
				code, body := fn.deliver(ctx, v.del)
				took := time.Since(began)
				proxy.Disarm()
				log := proxy.Take()
				if code != http.StatusServiceUnavailable {
					t.Errorf("answer %d %q, want 503 (the broker re-delivers)", code, body)
				}
				// What reached the API server decides what may be on it: nothing else.
				var want outcome
				for _, p := range log {
					if p.Method == http.MethodGet || p.Status < 200 || p.Status > 299 {
						continue
					}
					switch p.Resource() {
					case "workflowtaskresults":
						want.Completed, want.Marked = true, true
					case "events":
						want.Events, want.EventCount = 1, 1
					case "workflows":
						want.Recorded = true
					}
				}
				got := s.outcomeOf(t, v)
				if err := got.consistent(); err != nil {
					t.Errorf("half-written after the fault: %v (%+v)", err, got)
				}
				if got != want {
					t.Errorf("after the fault: %+v, want %+v (from what reached the API server: %s)", got, want, apitap.Sequence(log))
				}
				// The API is back: the re-delivered event completes the repair, recorded once.
				code2, body2 := fn.deliver(ctx, v.del)
				done := s.outcomeOf(t, v)
				if code2 != http.StatusOK || !done.complete() {
					t.Errorf("re-delivery: %d %q, outcome %+v; want 200 and the repair recorded once", code2, body2, done)
				}
				t.Logf("faulted: %d in %s (%s), left %s; re-delivered: %d (%d calls)", code, took.Round(time.Millisecond), short(body, 120), state(got), code2, len(proxy.Take()))
			})
		}
	}
}

func state(o outcome) string {
	switch {
	case o.complete():
		return "repaired and recorded"
	case o.Completed && o.Events == 1:
		return "repaired, Event created, record pending"
	case o.Completed:
		return "repaired, record pending"
	case o == outcome{}:
		return "nothing written"
	}
	return fmt.Sprintf("%+v", o)
}
