package metrics

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
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
		`argo_disruption_handler_build_info{go_version="`,
		`go_goroutines`,
		`process_resident_memory_bytes`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	last := regexp.MustCompile(`(?m)^argo_disruption_handler_sweep_last_run_timestamp_seconds (\S+)$`).FindStringSubmatch(string(body))
	var ts float64
	if last != nil {
		_, _ = fmt.Sscan(last[1], &ts)
	}
	if d := time.Since(time.Unix(int64(ts), 0)); d < 0 || d > time.Minute {
		t.Errorf("sweep_last_run_timestamp_seconds %v, want about now", last)
	}
}

func TestBuildLabels(t *testing.T) {
	for _, c := range []struct {
		name                         string
		bi                           *debug.BuildInfo
		ok                           bool
		version, revision, goVersion string
	}{
		{"no build information", nil, false, "unknown", "unknown", runtime.Version()},
		{"no VCS stamp (func build context without .git)", &debug.BuildInfo{GoVersion: "go1.25.7", Main: debug.Module{Path: "function"}}, true,
			"unknown", "unknown", "go1.25.7"},
		{"tagged build", &debug.BuildInfo{GoVersion: "go1.25.7", Main: debug.Module{Path: "function", Version: "v1.4.0"},
			Settings: []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: "3a04435f"}, {Key: "vcs.modified", Value: "false"}}}, true,
			"v1.4.0", "3a04435f", "go1.25.7"},
		{"work tree build", &debug.BuildInfo{Main: debug.Module{Path: "function", Version: "(devel)"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "656c59a"}}}, true,
			"(devel)", "656c59a", runtime.Version()},
	} {
		v, r, g := buildLabels(c.bi, c.ok)
		if v != c.version || r != c.revision || g != c.goVersion {
			t.Errorf("%s: %q %q %q, want %q %q %q", c.name, v, r, g, c.version, c.revision, c.goVersion)
		}
	}
}

// TestClientGoMetrics makes a request with a real clientset and reads client-go's series on two
// Recorders: client-go's hooks are set once per process and feed both.
func TestClientGoMetrics(t *testing.T) {
	first, second := New(), New()
	if !ClientGoHooked() {
		t.Fatal("client-go's metric hooks were set by another package: rest_client_* stay empty")
	}
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"kind":"Pod","apiVersion":"v1","metadata":{"name":"p","namespace":"argo"}}`)
	}))
	defer api.Close()
	cs, err := kubernetes.NewForConfig(&rest.Config{Host: api.URL, QPS: 5, Burst: 10, WrapTransport: first.WrapTransport})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Pods("argo").Get(context.Background(), "p", metav1.GetOptions{}); err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(api.URL)
	for name, r := range map[string]*Recorder{"first": first, "second": second} {
		scrape := httptest.NewRecorder()
		r.Handler().ServeHTTP(scrape, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		for _, want := range []string{
			fmt.Sprintf(`rest_client_requests_total{code="200",host=%q,method="GET"} 1`, u.Host),
			fmt.Sprintf(`rest_client_request_duration_seconds_count{host=%q,verb="GET"} 1`, u.Host),
			fmt.Sprintf(`rest_client_rate_limiter_duration_seconds_count{host=%q,verb="GET"} 1`, u.Host),
		} {
			if !strings.Contains(scrape.Body.String(), want) {
				t.Errorf("%s recorder's /metrics lacks %q", name, want)
			}
		}
	}
	// The request also went through the function's own per-resource histogram.
	scrape := httptest.NewRecorder()
	first.Handler().ServeHTTP(scrape, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if want := `argo_disruption_handler_api_request_duration_seconds_count{code="200",resource="pods",verb="get"} 1`; !strings.Contains(scrape.Body.String(), want) {
		t.Errorf("/metrics lacks %q", want)
	}
}

func TestNilRecorder(t *testing.T) {
	var r *Recorder
	r.Event("t", Handled, 0)
	r.Repair("a", "b", true)
	r.Sweep(0, 0, 0, true)
	r.DeadLetter("t", "500")
	r.EventIgnored(IgnoredNothingToDo)
	r.NotOurs()
	if rt := r.WrapTransport(http.DefaultTransport); rt != http.DefaultTransport {
		t.Error("nil recorder wrapped the transport")
	}
}
