package metrics

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestResourceAndVerb(t *testing.T) {
	cases := []struct {
		method, url    string
		verb, resource string
	}{
		{"GET", "/api/v1/namespaces/argo/pods/etl-extract-123", "get", "pods"},
		{"GET", "/api/v1/namespaces/argo/pods?labelSelector=a", "list", "pods"},
		{"GET", "/api/v1/pods?fieldSelector=spec.nodeName%3Dn", "list", "pods"},
		{"GET", "/api/v1/nodes/ip-10-0-1-2", "get", "nodes"},
		{"GET", "/apis/argoproj.io/v1alpha1/namespaces/argo/workflows?labelSelector=x&limit=100", "list", "workflows"},
		{"PATCH", "/apis/argoproj.io/v1alpha1/namespaces/argo/workflowtaskresults/etl-123", "patch", "workflowtaskresults"},
		{"POST", "/api/v1/namespaces/argo/events", "create", "events"},
		{"DELETE", "/api/v1/namespaces/argo/pods/p", "delete", "pods"},
		{"PUT", "/apis/coordination.k8s.io/v1/namespaces/adh/leases/sweep", "update", "leases"},
		{"GET", "/apis/karpenter.sh/v1/nodeclaims/c-1", "get", "nodeclaims"},
		{"PATCH", "/api/v1/namespaces/argo/pods/p/status", "patch", "pods/status"},
		{"GET", "/version", "get", "other"},
	}
	for _, c := range cases {
		req := httptest.NewRequest(c.method, c.url, nil)
		if v, r := Verb(req), Resource(req.URL.Path); v != c.verb || r != c.resource {
			t.Errorf("%s %s: %s %s, want %s %s", c.method, c.url, v, r, c.verb, c.resource)
		}
	}
}

func TestExposition(t *testing.T) {
	r := New()
	r.Event("dev.knative.apiserver.resource.delete", Handled, 3*time.Millisecond)
	r.Event("dev.knative.apiserver.resource.delete", Handled, time.Millisecond)
	r.Event("unknown", Refused, time.Microsecond)
	r.Repair("complete-task-result", "EvictionByEvictionAPI", false)
	r.Sweep(2*time.Second, 40, 3, true)
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusConflict) }))
	defer api.Close()
	client := &http.Client{Transport: r.WrapTransport(http.DefaultTransport)}
	resp, err := client.Get(api.URL + "/apis/argoproj.io/v1alpha1/namespaces/argo/workflows/wf")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	addr, stop, err := r.Serve("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer stop(context.Background())
	resp, err = http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`argo_disruption_handler_events_total{outcome="handled",type="dev.knative.apiserver.resource.delete"} 2`,
		`argo_disruption_handler_events_total{outcome="refused",type="unknown"} 1`,
		`argo_disruption_handler_repairs_total{action="complete-task-result",dry_run="false",reason="EvictionByEvictionAPI"} 1`,
		`argo_disruption_handler_api_request_duration_seconds_count{code="409",resource="workflows",verb="get"} 1`,
		`argo_disruption_handler_sweep_stuck_workflow_nodes 3`,
		`argo_disruption_handler_sweep_workflows_scanned 40`,
		`argo_disruption_handler_sweep_duration_seconds_count 1`,
		`go_goroutines`,
		`process_resident_memory_bytes`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func TestNilRecorder(t *testing.T) {
	var r *Recorder
	r.Event("t", Handled, 0)
	r.Repair("a", "b", true)
	r.Sweep(0, 0, 0, true)
	if rt := r.WrapTransport(http.DefaultTransport); rt != http.DefaultTransport {
		t.Error("nil recorder wrapped the transport")
	}
}
