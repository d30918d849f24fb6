// Package cesink is both ends of the event path the e2e tests and the benchmarks put the function
// on: a Sink receives the CloudEvents the ApiServerSource adapter sends (where a Knative broker
// would), and Deliver and Replay post CloudEvents to the function as the broker does.
package cesink

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
)

// Request is one CloudEvent a Sink received: decoded, and as it was sent (to replay it byte for
// byte).
type Request struct {
	Event  event.Event
	Header http.Header
	Body   []byte
	At     time.Time // when it arrived
	// Status and Answer are what the sink answered (Status 0 while a forwarded request awaits
	// the receiver's answer).
	Status int
	Answer string
}

// Name is the name of the object the event is about (the adapter's "name" extension).
func (r *Request) Name() string {
	name, _ := r.Event.Extensions()["name"].(string)
	return name
}

// Sink receives CloudEvents (binary or structured mode) on a loopback port. A recording sink
// keeps every event and answers 202 Accepted; a handling one hands each to its answer function
// and answers the status it returns, keeping nothing; a forwarding one keeps every event and
// answers what the receiver it forwards to answered; an answering one keeps every event and
// answers each the same.
type Sink struct {
	// URL is where senders post (the adapter's K_SINK).
	URL    string
	stop   func()
	answer func(*Request) (status int, body string)
	keep   bool
	mu     sync.Mutex
	kept   []Request
	last   time.Time
}

// Record starts a sink that keeps every event it receives.
func Record() (*Sink, error) { return start(&Sink{keep: true}) }

// Handle starts a sink that answers each event with answer's status.
func Handle(answer func(*Request) int) (*Sink, error) {
	return start(&Sink{answer: func(r *Request) (int, string) { return answer(r), "" }})
}

// Forward starts a sink that keeps every event and posts it, as it was sent, to url, answering
// the receiver's status and body: a tap on the path to the function that shows what was
// delivered when and what the function said (a broker puts a failed answer's body in the dead
// letter). A failed post answers 502 with the error.
func Forward(url string) (*Sink, error) {
	return start(&Sink{keep: true, answer: func(r *Request) (int, string) {
		code, body, err := Replay(context.Background(), url, r)
		if err != nil {
			return http.StatusBadGateway, err.Error()
		}
		return code, body
	}})
}

// Answer starts a sink that keeps every event and answers each with status and body: a
// subscriber that always fails, say.
func Answer(status int, body string) (*Sink, error) {
	return start(&Sink{keep: true, answer: func(*Request) (int, string) { return status, body }})
}

func start(s *Sink) (*Sink, error) {
	var err error
	s.URL, s.stop, err = Serve(s)
	return s, err
}

// Close stops the sink.
func (s *Sink) Close() { s.stop() }

func (s *Sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	at := time.Now()
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	ev, err := cehttp.NewEventFromHTTPRequest(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	req := Request{Event: *ev, Header: r.Header.Clone(), Body: body, At: at}
	// Kept in the order of arrival; the answer is filled in once known.
	s.mu.Lock()
	s.last = at
	kept := -1
	if s.keep {
		s.kept = append(s.kept, req)
		kept = len(s.kept) - 1
	}
	s.mu.Unlock()
	status, answer := http.StatusAccepted, ""
	if s.answer != nil {
		status, answer = s.answer(&req)
	}
	if kept >= 0 {
		s.mu.Lock()
		s.kept[kept].Status, s.kept[kept].Answer = status, answer
		s.mu.Unlock()
	}
	w.WriteHeader(status)
	if answer != "" {
		_, _ = io.WriteString(w, answer)
	}
}

// Last is when the last event arrived (zero before the first).
func (s *Sink) Last() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

// Events returns copies of the kept events about subject, in the order received.
func (s *Sink) Events(subject string) []event.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []event.Event
	for _, r := range s.kept {
		if r.Event.Subject() == subject {
			out = append(out, r.Event.Clone())
		}
	}
	return out
}

// Received returns the kept requests in the order received (events cloned).
func (s *Sink) Received() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Request, len(s.kept))
	for i, r := range s.kept {
		r.Event = r.Event.Clone()
		out[i] = r
	}
	return out
}

// Summary lists the kept events as "subject type", in the order received (for a failure message).
func (s *Sink) Summary() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	parts := make([]string, len(s.kept))
	for i, r := range s.kept {
		parts[i] = r.Event.Subject() + " " + r.Event.Type()
	}
	return strings.Join(parts, "; ")
}

// PodSubject is the subject the adapter gives the events of a pod.
func PodSubject(namespace, name string) string {
	return "/apis/v1/namespaces/" + namespace + "/pods/" + name
}

// Serve runs h on a free loopback port and returns its URL and a function that stops it.
func Serve(h http.Handler) (url string, stop func(), err error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("listening on a loopback port: %w", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	return "http://" + l.Addr().String() + "/", func() { _ = srv.Close() }, nil
}

// client bounds each delivery as func-go bounds the handling of a request.
var client = &http.Client{Timeout: 30 * time.Second}

// Deliver posts e to url in binary mode, as the broker does, with header's fields added (an
// Authorization, say), and returns the answer's status and body.
func Deliver(ctx context.Context, url string, e event.Event, header http.Header) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, nil)
	if err != nil {
		return 0, "", err
	}
	if err := cehttp.WriteRequest(ctx, binding.ToMessage(&e), req); err != nil {
		return 0, "", fmt.Errorf("encoding event %s: %w", e.ID(), err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	return do(req)
}

// Replay posts a received request to url as it was sent, and returns the answer's status and
// body.
func Replay(ctx context.Context, url string, r *Request) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(r.Body))
	if err != nil {
		return 0, "", err
	}
	for k, vs := range r.Header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	req.Header.Del("Content-Length")
	return do(req)
}

func do(req *http.Request) (int, string, error) {
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b)), nil
}
