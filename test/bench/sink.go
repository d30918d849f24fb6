//go:build e2e

package main

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/protocol"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"

	"function/handlers"
	"function/internal/localcluster/apitap"
	"function/internal/localcluster/cesink"
)

const typeDelete = "dev.knative.apiserver.resource.delete"

// delivery is what happened to one event of a followed pod in the in-process sink.
type delivery struct {
	Pod    string
	Type   string
	Recv   time.Time // request arrived at the sink
	Done   time.Time // handler returned
	Status int
	Calls  []apitap.Call
	Err    string
}

// deletion is every event the deletion of one pod produced, up to and including its delete
// event: a force deletion is seen by the watch as an update (deletionTimestamp set) then a delete.
type deletion struct {
	Pod    string
	Events []delivery
}

// repair is the event during which the task result was patched (or the first event).
func (d deletion) repair() delivery {
	for _, e := range d.Events {
		if _, ok := patchedAt(e.Calls); ok {
			return e
		}
	}
	if len(d.Events) > 0 {
		return d.Events[0]
	}
	return delivery{Pod: d.Pod}
}

// calls is every call the deletion's events made.
func (d deletion) calls() []apitap.Call {
	var out []apitap.Call
	for _, e := range d.Events {
		out = append(out, e.Calls...)
	}
	return out
}

// sink receives the ApiServerSource adapter's CloudEvents (a cesink.Sink) and hands them to the
// in-process handler, attributing each event's API calls to it. Delete events of pods marked for
// capture are stored and acknowledged without handling (replayed later to a fresh process).
type sink struct {
	*cesink.Sink
	h *handlers.Handler

	mu       sync.Mutex
	capture  map[string]bool
	captured map[string]*cesink.Request
	waiters  map[string]*follow
	byType   map[string]int
	status   map[int]int
	other    []apitap.Call // calls made for events nobody waits for
}

// startSink starts a sink for h on a loopback port (its URL is the adapter's K_SINK).
func startSink(h *handlers.Handler) (*sink, error) {
	s := &sink{h: h, capture: map[string]bool{}, captured: map[string]*cesink.Request{}, waiters: map[string]*follow{},
		byType: map[string]int{}, status: map[int]int{}}
	var err error
	s.Sink, err = cesink.Handle(s.answer)
	return s, err
}

// follow collects the events of one pod until its delete event has been answered.
type follow struct {
	d    deletion
	done chan deletion
}

// expect returns a channel that gets every event of pod from now until its delete event.
func (s *sink) expect(pod string) chan deletion {
	f := &follow{d: deletion{Pod: pod}, done: make(chan deletion, 1)}
	s.mu.Lock()
	s.waiters[pod] = f
	s.mu.Unlock()
	return f.done
}

// keep marks pod's delete event for capture.
func (s *sink) keep(pod string) {
	s.mu.Lock()
	s.capture[pod] = true
	s.mu.Unlock()
}

// answer handles one event and returns the status the adapter is answered.
func (s *sink) answer(r *cesink.Request) int {
	ev, name := r.Event, r.Name()
	s.mu.Lock()
	s.byType[ev.Type()]++
	capture := s.capture[name]
	if capture && ev.Type() == typeDelete {
		s.captured[name] = r
	}
	f := s.waiters[name]
	if f != nil && ev.Type() == typeDelete {
		delete(s.waiters, name)
	}
	s.mu.Unlock()
	finish := func(d delivery) {
		if f == nil {
			return
		}
		f.d.Events = append(f.d.Events, d)
		if d.Type == typeDelete {
			f.done <- f.d
		}
	}
	if capture {
		// Kept for a fresh process (the cold starts): acknowledged, not handled, so that the
		// repair is still to be made when it is replayed.
		finish(delivery{Pod: name, Type: ev.Type(), Recv: r.At, Done: time.Now(), Status: http.StatusOK})
		return http.StatusOK
	}
	log := &apitap.Log{}
	res := s.h.Handle(apitap.WithLog(context.Background(), log), ev)
	done := time.Now()
	st := resultStatus(res)
	s.mu.Lock()
	s.status[st]++
	if f == nil {
		s.other = append(s.other, log.Calls()...)
	}
	s.mu.Unlock()
	d := delivery{Pod: name, Type: ev.Type(), Recv: r.At, Done: done, Status: st, Calls: log.Calls()}
	if res != nil {
		d.Err = res.Error()
	}
	finish(d)
	return st
}

// waitQuiet returns once no request arrived for `quiet` (the adapter delivers serially: events
// of the set-up must not queue in front of the measured ones), or after max.
func waitQuiet(ctx context.Context, last func() time.Time, quiet, max time.Duration) {
	deadline := time.Now().Add(max)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if time.Since(last()) >= quiet {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func resultStatus(res error) int {
	if res == nil {
		return http.StatusOK
	}
	var r *cehttp.Result
	if protocol.ResultAs(res, &r) {
		return r.StatusCode
	}
	return http.StatusInternalServerError
}
