package apitap

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

// Fault is what a Proxy does to a call instead of simply passing it through.
type Fault string

const (
	// FaultReset closes the connection before forwarding: the API server never sees the call.
	FaultReset Fault = "reset"
	// FaultResetAfter forwards the call, then closes the connection: done, but no answer.
	FaultResetAfter Fault = "reset-after-forward"
	// Fault500 answers 500 InternalError.
	Fault500 Fault = "500"
	// Fault429 answers 429 TooManyRequests with Retry-After: 1 (client-go retries those).
	Fault429 Fault = "429"
	// FaultSlow holds the call past the client's deadline, then drops it: never forwarded.
	FaultSlow Fault = "slow"
	// FaultSlowAfter forwards the call, then answers after the client's deadline: done,
	// answered too late.
	FaultSlowAfter Fault = "slow-after-forward"
)

// Faults are all the faults a Proxy injects.
var Faults = []Fault{FaultReset, FaultResetAfter, Fault500, Fault429, FaultSlow, FaultSlowAfter}

// ReverseProxy forwards requests to admin's API server with admin's credentials: whoever talks
// to it needs none of their own.
func ReverseProxy(admin *rest.Config) (*httputil.ReverseProxy, error) {
	up, err := url.Parse(admin.Host)
	if err != nil {
		return nil, fmt.Errorf("API server address %q: %w", admin.Host, err)
	}
	rt, err := rest.TransportFor(admin)
	if err != nil {
		return nil, fmt.Errorf("transport to %s: %w", admin.Host, err)
	}
	return &httputil.ReverseProxy{
		Rewrite:   func(pr *httputil.ProxyRequest) { pr.SetURL(up); pr.Out.Host = up.Host },
		Transport: rt,
	}, nil
}

// Proxy is a reverse proxy to the API server that, when armed, injects one kind of fault into
// every request from the Nth on: an outage that starts at a chosen call and lasts until
// disarmed. It logs every request.
type Proxy struct {
	// URL is where clients reach it (no credentials needed).
	URL  string
	srv  *httptest.Server
	rp   *httputil.ReverseProxy
	hold time.Duration
	mu   sync.Mutex
	n    int
	from int
	kind Fault
	log  []*Call
}

// NewProxy starts a Proxy to admin's API server; hold is how long the slow faults keep a call
// (longer than the client's deadline).
func NewProxy(admin *rest.Config, hold time.Duration) (*Proxy, error) {
	rp, err := ReverseProxy(admin)
	if err != nil {
		return nil, err
	}
	p := &Proxy{rp: rp, hold: hold}
	p.srv = httptest.NewServer(p)
	p.URL = p.srv.URL
	return p, nil
}

// Close stops the proxy.
func (p *Proxy) Close() { p.srv.Close() }

// Arm makes every request from the from-th on (counted from now) get kind, and empties the log.
func (p *Proxy) Arm(kind Fault, from int) {
	p.mu.Lock()
	p.n, p.from, p.kind, p.log = 0, from, kind, nil
	p.mu.Unlock()
}

// Disarm lets every request through again.
func (p *Proxy) Disarm() {
	p.mu.Lock()
	p.from = 0
	p.mu.Unlock()
}

// Take returns the requests since the last Take (or Arm), in the order they came, and starts a
// new count.
func (p *Proxy) Take() []Call {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Call, len(p.log))
	for i, c := range p.log {
		out[i] = *c
	}
	p.log, p.n = nil, 0
	return out
}

func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// The entry is logged at once and completed under the lock: a test reading the log right
	// after the client got its answer sees every call, and the API server's answer of each call
	// that reached it (that answer always comes before the client's).
	p.mu.Lock()
	p.n++
	entry := &Call{N: p.n, Method: r.Method, ContentType: r.Header.Get("Content-Type"), Path: r.URL.Path, Query: r.URL.RawQuery, Start: time.Now()}
	if p.from > 0 && p.n >= p.from {
		entry.Fault = p.kind
	}
	p.log = append(p.log, entry)
	p.mu.Unlock()
	upstream := func(code int) {
		p.mu.Lock()
		entry.Status, entry.End = code, time.Now()
		p.mu.Unlock()
	}
	// forward sends the request to the API server even if the client gives up meanwhile, into
	// a recorder, and returns it.
	forward := func() *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		p.rp.ServeHTTP(rec, r.WithContext(context.WithoutCancel(r.Context())))
		upstream(rec.Code)
		return rec
	}
	switch entry.Fault {
	case "":
		rec := httptest.NewRecorder()
		p.rp.ServeHTTP(rec, r)
		upstream(rec.Code)
		copyResponse(w, rec)
	case FaultReset:
		hijackClose(w)
	case FaultResetAfter:
		forward()
		hijackClose(w)
	case Fault500:
		writeStatus(w, http.StatusInternalServerError, metav1.StatusReasonInternalError, "injected: etcdserver: request timed out")
	case Fault429:
		w.Header().Set("Retry-After", "1")
		writeStatus(w, http.StatusTooManyRequests, metav1.StatusReasonTooManyRequests, "injected: too many requests")
	case FaultSlow:
		select {
		case <-r.Context().Done(): // the client gave up: the call never reaches the API server
		case <-time.After(p.hold):
			writeStatus(w, http.StatusGatewayTimeout, metav1.StatusReasonTimeout, "injected: slow")
		}
	case FaultSlowAfter:
		rec := forward()
		select {
		case <-r.Context().Done():
		case <-time.After(p.hold):
			copyResponse(w, rec)
		}
	}
}

func copyResponse(w http.ResponseWriter, rec *httptest.ResponseRecorder) {
	for k, vs := range rec.Header() {
		w.Header()[k] = vs
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
}

func hijackClose(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			_ = conn.Close()
			return
		}
	}
	panic(http.ErrAbortHandler)
}

// writeStatus answers as the API server does: a metav1.Status in JSON.
func writeStatus(w http.ResponseWriter, code int, reason metav1.StatusReason, msg string) {
	st := metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusFailure,
		Message: msg, Reason: reason, Code: int32(code)}
	b, _ := json.Marshal(st)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(b)
}
