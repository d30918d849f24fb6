package apitap

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/rest"
)

func TestResource(t *testing.T) {
	for path, want := range map[string]string{
		"/api/v1/namespaces/argo/pods/wf-1":                                       "pods",
		"/api/v1/namespaces/argo/pods/wf-1/eviction":                              "pods",
		"/api/v1/namespaces/argo/events":                                          "events",
		"/apis/argoproj.io/v1alpha1/namespaces/argo/workflowtaskresults/wf-1-123": "workflowtaskresults",
		"/apis/coordination.k8s.io/v1/namespaces/adh/leases/sweep":                "leases",
		"/api/v1/nodes/kwok-node-0":                                               "nodes",
		"/api/v1/pods":                                                            "pods",
		"/apis/argoproj.io/v1alpha1/workflows":                                    "workflows",
		"/apis/karpenter.sh/v1/nodeclaims/claim-a":                                "nodeclaims",
		"/api/v1/namespaces/argo":                                                 "namespaces",
		"/healthz":                                                                "/healthz",
	} {
		if got := Resource(path); got != want {
			t.Errorf("Resource(%q) = %q, want %q", path, got, want)
		}
	}
}

func TestSummaryAndFilters(t *testing.T) {
	calls := []Call{
		{Method: "GET", Path: "/api/v1/namespaces/a/pods/p", Status: 200},
		{Method: "PATCH", Path: "/apis/argoproj.io/v1alpha1/namespaces/a/workflows/w", Status: 409, Guarded: true},
		{Method: "PATCH", Path: "/apis/argoproj.io/v1alpha1/namespaces/a/workflows/w", Status: 200, Guarded: true},
		{Method: "POST", Path: "/api/v1/namespaces/a/events", Err: "connection reset"},
	}
	if got, want := Summary(calls), "GET pods 200 ×1, PATCH workflows 200 ×1, PATCH workflows 409 ×1, POST events error ×1"; got != want {
		t.Errorf("Summary = %q, want %q", got, want)
	}
	if got := Statuses(calls, "PATCH", "workflows"); !slices.Equal(got, []int{409, 200}) {
		t.Errorf("Statuses = %v", got)
	}
	if Accepted(calls, "PATCH", "workflows") != 1 || Accepted(calls, "POST", "events") != 0 || !Guarded(calls, "PATCH", "workflows") {
		t.Errorf("Accepted/Guarded wrong for %+v", calls)
	}
}

// apiServer answers every request 200 with an empty JSON object, and 409 to the first PATCH.
func apiServer(t *testing.T) *httptest.Server {
	patched := false
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if r.Method == http.MethodPatch && !patched {
			patched = true
			w.WriteHeader(http.StatusConflict)
			return
		}
		_, _ = w.Write([]byte(`{}`))
	}))
	t.Cleanup(srv.Close)
	return srv
}

func send(t *testing.T, c *http.Client, ctx context.Context, method, url, body string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

func TestTap(t *testing.T) {
	srv := apiServer(t)
	var before []string
	tap := &Tap{Before: func(r *http.Request) { before = append(before, r.Method) }}
	c := &http.Client{Transport: tap.Wrap(http.DefaultTransport)}
	mine := &Log{}
	send(t, c, context.Background(), http.MethodGet, srv.URL+"/api/v1/namespaces/a/pods/p", "")
	send(t, c, WithLog(context.Background(), mine), http.MethodPatch, srv.URL+"/api/v1/namespaces/a/pods/p", `{"metadata":{"resourceVersion":"7"}}`)
	send(t, c, WithLog(context.Background(), mine), http.MethodPatch, srv.URL+"/api/v1/namespaces/a/pods/p", `{"metadata":{"labels":{"a":"b"}}}`)
	if got := tap.Calls(); len(got) != 1 || got[0].Key() != "GET pods" || got[0].Status != 200 || got[0].End.Before(got[0].Start) {
		t.Errorf("the tap's own log: %+v", got)
	}
	got := mine.Calls()
	if len(got) != 2 || got[0].Status != 409 || !got[0].Guarded || got[1].Status != 200 || got[1].Guarded {
		t.Errorf("the context's log: %+v", got)
	}
	if !slices.Equal(before, []string{"GET", "PATCH", "PATCH"}) {
		t.Errorf("Before saw %v", before)
	}
	tap.Reset()
	if len(tap.Calls()) != 0 {
		t.Error("Reset left calls")
	}
}

func TestProxy(t *testing.T) {
	srv := apiServer(t)
	p, err := NewProxy(&rest.Config{Host: srv.URL}, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c := &http.Client{Timeout: time.Second}
	status := func(method string) int {
		req, _ := http.NewRequest(method, p.URL+"/api/v1/namespaces/a/events", strings.NewReader(`{}`))
		resp, err := c.Do(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := status(http.MethodGet); got != 200 {
		t.Fatalf("through the unarmed proxy: %d", got)
	}
	p.Arm(Fault500, 2)
	if a, b := status(http.MethodGet), status(http.MethodPost); a != 200 || b != 500 {
		t.Errorf("armed from the 2nd call: answers %d, %d, want 200, 500", a, b)
	}
	if got, want := Sequence(p.Take()), "#1 GET events → API 200; #2 POST events [500]"; got != want {
		t.Errorf("Sequence = %q, want %q", got, want)
	}
	p.Arm(FaultResetAfter, 1)
	if got := status(http.MethodPost); got != 0 {
		t.Errorf("reset after forwarding answered %d", got)
	}
	p.Disarm()
	if got := p.Take(); len(got) != 1 || got[0].Fault != FaultResetAfter || got[0].Status != 200 {
		t.Errorf("reset after forwarding logged %+v, want forwarded (200) and reset", got)
	}
}
