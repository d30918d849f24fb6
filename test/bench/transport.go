//go:build e2e

package main

import (
	"context"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// call is one HTTP request the function's clients made to the API server.
type call struct {
	Method      string
	ContentType string // of the request body (the patch type)
	Path        string
	Query       string
	Status      int
	Err         string
	Start       time.Time
	End         time.Time // response headers received
}

// Resource is the API resource the path names ("workflowtaskresults", "pods"…).
func (c call) Resource() string {
	parts := strings.Split(strings.Trim(c.Path, "/"), "/")
	// /api/v1/namespaces/<ns>/<res>/<name> or /apis/<g>/<v>/namespaces/<ns>/<res>/<name>
	for i := 0; i < len(parts); i++ {
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
	return c.Path
}

// Key is "METHOD resource" (names left out), to compare repairs.
func (c call) Key() string { return c.Method + " " + c.Resource() }

// callLog collects the calls made on behalf of one event.
type callLog struct {
	mu    sync.Mutex
	calls []call
}

func (l *callLog) add(c call) {
	l.mu.Lock()
	l.calls = append(l.calls, c)
	l.mu.Unlock()
}

func (l *callLog) snapshot() []call {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := append([]call(nil), l.calls...)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	return out
}

type callsKey struct{}

// withCalls makes the counting transport attribute the requests made with ctx to l: client-go
// sends each request with the context the handler passed down.
func withCalls(ctx context.Context, l *callLog) context.Context {
	return context.WithValue(ctx, callsKey{}, l)
}

// countingTransport counts every request (rest.Config.Wrap) and lists it in the callLog of its
// context, if any.
type countingTransport struct {
	next  http.RoundTripper
	total *atomic.Int64
	// unattributed gets requests without a callLog in their context.
	unattributed *callLog
}

func (t *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := t.next.RoundTrip(req)
	c := call{Method: req.Method, ContentType: req.Header.Get("Content-Type"), Path: req.URL.Path, Query: req.URL.RawQuery, Start: start, End: time.Now()}
	if resp != nil {
		c.Status = resp.StatusCode
	}
	if err != nil {
		c.Err = err.Error()
	}
	t.total.Add(1)
	if l, ok := req.Context().Value(callsKey{}).(*callLog); ok {
		l.add(c)
	} else if t.unattributed != nil {
		t.unattributed.add(c)
	}
	return resp, err
}

// explain says why the handler makes a call, by method and resource; the bench lists whatever
// happens, and this only annotates it (an unknown call is shown as such).
func explain(c call) string {
	patch := ""
	switch {
	case strings.Contains(c.ContentType, "json-patch"):
		patch = " (JSON patch: test operations checked by the API server, no read needed)"
	case strings.Contains(c.ContentType, "merge-patch"):
		patch = " (merge patch)"
	}
	switch {
	case c.Status == http.StatusConflict:
		return "409 Conflict: lost a race, a re-read follows"
	case c.Status == http.StatusUnprocessableEntity && c.Method == http.MethodPatch:
		return "422: a test operation failed (the object is not as expected): the full path reads and decides"
	}
	switch c.Key() {
	case "GET workflows":
		return "read the Workflow: scope (namespace, instance ID), phase, the gate, existing records"
	case "GET pods":
		return "is the pod really gone, or re-created under the same name (a live pod may still report)?"
	case "GET nodes":
		return "the pod's Node: is its host gone?"
	case "GET workflowtaskresults":
		return "the node's task result: its label and resourceVersion"
	case "PATCH workflowtaskresults":
		return "THE REPAIR: label report-outputs-completed=true + our marker" + patch
	case "POST workflowtaskresults":
		return "THE REPAIR (ladder step 2): create the missing task result, already complete"
	case "PATCH pods":
		return "release the status finalizer / record a warning on the pod" + patch
	case "POST events":
		return "Kubernetes Event PodDisrupted on the Workflow (deterministic name: a re-delivery gets AlreadyExists)"
	case "PATCH workflows":
		return "the disruption record annotation on the Workflow" + patch
	}
	return "(not explained by the bench: see the handler code)"
}
