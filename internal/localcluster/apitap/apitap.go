// Package apitap records the Kubernetes API calls a client makes (Tap, a RoundTripper) and stands
// between a client and the API server to fail chosen calls (Proxy). The e2e tests and the
// benchmarks read the function's API traffic through it, so that a call is named, counted and
// printed the same way in both.
package apitap

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// Resource is the API resource a request path names: "pods" for
// /api/v1/namespaces/<ns>/pods/<name>[/<subresource>], "workflowtaskresults" for
// /apis/argoproj.io/v1alpha1/namespaces/<ns>/workflowtaskresults, "nodes" for /api/v1/nodes/<name>,
// "pods" for /api/v1/pods. A path that is not an API path is returned as it is.
func Resource(path string) string {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	for i := range parts {
		if parts[i] == "namespaces" && i+2 < len(parts) {
			return parts[i+2]
		}
	}
	switch {
	case len(parts) >= 3 && parts[0] == "api":
		return parts[2]
	case len(parts) >= 4 && parts[0] == "apis":
		return parts[3]
	}
	return path
}

// Call is one API request and how it ended.
type Call struct {
	// N is the call's place among those a Proxy saw since it was armed or taken (1 for the
	// first); 0 for a Tap's calls.
	N           int `json:",omitempty"`
	Method      string
	ContentType string // of the request body (the patch type)
	Path        string
	Query       string
	// Status is the answer, 0 when none came. Through a Proxy it is the API server's answer, 0
	// when the call was not forwarded.
	Status int
	Err    string
	// Guarded: the write's body carries metadata.resourceVersion (a 409 precondition).
	Guarded bool `json:",omitempty"`
	// Fault is what a Proxy did to the call; "" when it passed through.
	Fault Fault `json:",omitempty"`
	Start time.Time
	End   time.Time // response headers received
}

// Resource is the API resource the call's path names.
func (c Call) Resource() string { return Resource(c.Path) }

// Key is "METHOD resource" (names left out), to compare calls of different objects.
func (c Call) Key() string { return c.Method + " " + c.Resource() }

// Accepted reports whether the API server answered 2xx.
func (c Call) Accepted() bool { return c.Status >= 200 && c.Status < 300 }

// Log is a list of calls, safe for concurrent use.
type Log struct {
	mu    sync.Mutex
	calls []Call
}

// Add appends c.
func (l *Log) Add(c Call) {
	l.mu.Lock()
	l.calls = append(l.calls, c)
	l.mu.Unlock()
}

// Calls returns the calls in the order they were sent (a Tap adds each once it is answered).
func (l *Log) Calls() []Call {
	l.mu.Lock()
	out := slices.Clone(l.calls)
	l.mu.Unlock()
	sort.SliceStable(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	return out
}

// Reset empties the log.
func (l *Log) Reset() {
	l.mu.Lock()
	l.calls = nil
	l.mu.Unlock()
}

// Matching returns the calls of method on resource, in order.
func Matching(calls []Call, method, resource string) []Call {
	var out []Call
	for _, c := range calls {
		if c.Method == method && c.Resource() == resource {
			out = append(out, c)
		}
	}
	return out
}

// Accepted counts the calls of method on resource that the API server answered 2xx.
func Accepted(calls []Call, method, resource string) int {
	n := 0
	for _, c := range Matching(calls, method, resource) {
		if c.Accepted() {
			n++
		}
	}
	return n
}

// Statuses are the answers to the calls of method on resource, in order.
func Statuses(calls []Call, method, resource string) []int {
	var out []int
	for _, c := range Matching(calls, method, resource) {
		out = append(out, c.Status)
	}
	return out
}

// Guarded reports whether the first call of method on resource carried a resourceVersion.
func Guarded(calls []Call, method, resource string) bool {
	m := Matching(calls, method, resource)
	return len(m) > 0 && m[0].Guarded
}

// Summary counts the calls by "METHOD resource status" ("METHOD resource error" for one that got
// no answer), sorted: "GET pods 200 ×1, PATCH workflows 409 ×1".
func Summary(calls []Call) string {
	m := map[string]int{}
	for _, c := range calls {
		k := fmt.Sprintf("%s %s %d", c.Method, c.Resource(), c.Status)
		if c.Err != "" {
			k = fmt.Sprintf("%s %s error", c.Method, c.Resource())
		}
		m[k]++
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s ×%d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

// Sequence lists a Proxy's calls one by one with their fault and the API server's answer:
// "#1 GET pods → API 200; #2 PATCH workflowtaskresults [500]".
func Sequence(calls []Call) string {
	parts := make([]string, 0, len(calls))
	for _, c := range calls {
		s := fmt.Sprintf("#%d %s %s", c.N, c.Method, c.Resource())
		if c.Fault != "" {
			s += " [" + string(c.Fault) + "]"
		}
		if c.Status != 0 {
			s += fmt.Sprintf(" → API %d", c.Status)
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ")
}

type logKey struct{}

// WithLog makes a Tap list the calls made with ctx in l rather than in its own log: client-go
// sends each request with the context its caller passed down, so the calls of one event can be
// told from those of the others.
func WithLog(ctx context.Context, l *Log) context.Context {
	return context.WithValue(ctx, logKey{}, l)
}
