//go:build e2e

package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/protocol"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"

	"function/handlers"
)

const typeDelete = "dev.knative.apiserver.resource.delete"

// rawRequest is an HTTP request as the adapter sent it, to replay it byte for byte.
type rawRequest struct {
	Header http.Header
	Body   []byte
}

// delivery is what happened to one event of a followed pod in the in-process sink.
type delivery struct {
	Pod    string
	Type   string
	Recv   time.Time // request arrived at the sink
	Done   time.Time // handler returned
	Status int
	Calls  []call
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
func (d deletion) calls() []call {
	var out []call
	for _, e := range d.Events {
		out = append(out, e.Calls...)
	}
	return out
}

// sink receives the ApiServerSource adapter's CloudEvents and hands them to the in-process
// handler, attributing each event's API calls to it. Delete events of pods marked for capture
// are stored and acknowledged without handling (replayed later to a fresh process).
type sink struct {
	h *handlers.Handler

	mu       sync.Mutex
	capture  map[string]bool
	captured map[string]rawRequest
	waiters  map[string]*follow
	byType   map[string]int
	status   map[int]int
	other    []call // calls made for events nobody waits for
	last     time.Time
}

func newSink(h *handlers.Handler) *sink {
	return &sink{h: h, capture: map[string]bool{}, captured: map[string]rawRequest{}, waiters: map[string]*follow{},
		byType: map[string]int{}, status: map[int]int{}}
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

func (s *sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	recv := time.Now()
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	ev, err := cehttp.NewEventFromHTTPRequest(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	name, _ := ev.Extensions()["name"].(string)
	s.mu.Lock()
	s.last = recv
	s.byType[ev.Type()]++
	capture := s.capture[name]
	if capture && ev.Type() == typeDelete {
		s.captured[name] = rawRequest{Header: r.Header.Clone(), Body: body}
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
		w.WriteHeader(http.StatusOK)
		finish(delivery{Pod: name, Type: ev.Type(), Recv: recv, Done: time.Now(), Status: http.StatusOK})
		return
	}
	log := &callLog{}
	_, res := s.h.Handle(withCalls(context.Background(), log), *ev)
	done := time.Now()
	st := resultStatus(res)
	s.mu.Lock()
	s.status[st]++
	if f == nil {
		s.other = append(s.other, log.snapshot()...)
	}
	s.mu.Unlock()
	w.WriteHeader(st)
	d := delivery{Pod: name, Type: ev.Type(), Recv: recv, Done: done, Status: st, Calls: log.snapshot()}
	if res != nil {
		d.Err = res.Error()
	}
	finish(d)
}

// lastRequest is when the last event arrived.
func (s *sink) lastRequest() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
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

// serve runs h on a free loopback port and returns its URL and a stop function.
func serve(h http.Handler) (string, func(), error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	return "http://" + l.Addr().String() + "/", func() { _ = srv.Close() }, nil
}
