package wiring_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/flowcontrol"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"

	"function/config"
	"function/eventing/eventingtest"
	"function/internal/apifake"
	"function/internal/argoworkflow"
	"function/internal/metrics"
	"function/internal/notify"
	"function/internal/notify/notifytest"
	"function/internal/repair"
	"function/internal/wiring"
)

// TestOutOfScopeIsNeverWritten: a workflow outside ADH_NAMESPACES, one owned by another Argo
// controller instance, and an event from a source missing from ADH_ALLOWED_SOURCES are never
// written, whatever the event says; the same event in scope is repaired (so the refusal is the
// scope's doing, not the fixture's). The function is built by FromClients from a config.Config, as Start
// builds it, and the event delivered over HTTP.
func TestOutOfScopeIsNeverWritten(t *testing.T) {
	const apiServer = "https://10.96.0.1:443" // the fixture's source
	withInstance := func(id string) func(*wfv1.Workflow) {
		return func(wf *wfv1.Workflow) { wf.Labels = map[string]string{argoworkflow.LabelInstanceID: id} }
	}
	cases := []struct {
		name      string
		cfg       func(*config.Config)
		wf        func(*wfv1.Workflow)
		source    string
		podLabels map[string]string // added to the event's pod
		status    int
		msg       string // fragment of the answer when refused
		maxCalls  int    // API calls allowed (reads only when not repaired)
		repaired  bool
		wantWrite bool
	}{
		{name: "in scope: repaired", status: 200, maxCalls: 6, repaired: true, wantWrite: true},
		{name: "namespace not in ADH_NAMESPACES", cfg: func(c *config.Config) { c.Namespaces = []string{"ml-jobs"} }, status: 200},
		{name: "namespace in ADH_EXCLUDED_NAMESPACES", cfg: func(c *config.Config) { c.ExcludedNamespaces = []string{apifake.Namespace} }, status: 200},
		// The pod lacks the label its workflow has (not what Argo writes): its task result, labelled
		// by the executor, fails the conditional patch; the workflow is then read and skipped.
		{name: "workflow of another controller instance (none configured)", wf: withInstance("team-b"), status: 200, maxCalls: 3},
		{name: "workflow of another controller instance (ours configured)", cfg: func(c *config.Config) { c.ControllerInstanceID = "team-a" }, wf: withInstance("team-b"), status: 200, maxCalls: 1},
		{name: "workflow without instance label while ours is configured", cfg: func(c *config.Config) { c.ControllerInstanceID = "team-a" }, status: 200, maxCalls: 1},
		{name: "pod and workflow of another instance, ours configured", cfg: func(c *config.Config) { c.ControllerInstanceID = "team-a" }, wf: withInstance("team-b"),
			podLabels: map[string]string{argoworkflow.LabelInstanceID: "team-b"}, status: 200},
		{name: "pod of our instance, its workflow of another", cfg: func(c *config.Config) { c.ControllerInstanceID = "team-a" }, wf: withInstance("team-b"),
			podLabels: map[string]string{argoworkflow.LabelInstanceID: "team-a"}, status: 200, maxCalls: 3},
		{name: "our instance configured, on the pod and the workflow: repaired", cfg: func(c *config.Config) { c.ControllerInstanceID = "team-a" }, wf: withInstance("team-a"),
			podLabels: map[string]string{argoworkflow.LabelInstanceID: "team-a"}, status: 200, maxCalls: 6, repaired: true, wantWrite: true},
		{name: "source not in the allow-list", cfg: func(c *config.Config) { c.AllowedSources = []string{"https://kubernetes.default.svc"} },
			status: 403, msg: `CloudEvent source not allowed: "https://10.96.0.1:443"`},
		{name: "source only shares a prefix with an exact entry", cfg: func(c *config.Config) { c.AllowedSources = []string{"https://10.96.0.1"} },
			status: 403, msg: "ADH_ALLOWED_SOURCES"},
		{name: "forged source", cfg: func(c *config.Config) { c.AllowedSources = []string{apiServer} }, source: "https://attacker.example/10.96.0.1:443",
			status: 403, msg: "attacker.example"},
		{name: "source allowed exactly: repaired", cfg: func(c *config.Config) { c.AllowedSources = []string{"arn:aws:sqs:eu-west-1:1:q", apiServer} },
			status: 200, maxCalls: 6, repaired: true, wantWrite: true},
		{name: "source allowed by prefix: repaired", cfg: func(c *config.Config) { c.AllowedSources = []string{"https://10.96.*"} },
			status: 200, maxCalls: 6, repaired: true, wantWrite: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := defaultConfig(t)
			if tc.cfg != nil {
				tc.cfg(cfg)
			}
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			wf := apifake.Workflow()
			if tc.wf != nil {
				tc.wf(wf)
			}
			tr := apifake.TaskResult("false")
			if id, ok := wf.Labels[argoworkflow.LabelInstanceID]; ok {
				tr.Labels[argoworkflow.LabelInstanceID] = id // as the executor writes it
			}
			calls := apifake.NewCluster(wf, tr)
			kube, argo := calls.Kube, calls.Argo
			h := wiring.FromClients(cfg, &wiring.Clients{Kube: calls.Kube, Argo: calls.Argo, REST: calls.REST()}, nil, nil).Handler

			ev := eventingtest.Load(t, "pod-delete-evicted.json")
			if tc.podLabels != nil {
				var pod map[string]any
				if err := json.Unmarshal(ev.Data(), &pod); err != nil {
					t.Fatal(err)
				}
				labels := pod["metadata"].(map[string]any)["labels"].(map[string]any)
				for k, v := range tc.podLabels {
					labels[k] = v
				}
				if err := ev.SetData("application/json", pod); err != nil {
					t.Fatal(err)
				}
			}
			if tc.source != "" {
				ev.SetSource(tc.source)
			}
			code, body := deliver(t, h, ev)
			if code != tc.status || (tc.msg != "" && !strings.Contains(body, tc.msg)) {
				t.Fatalf("answer %d %q, want %d %q", code, body, tc.status, tc.msg)
			}
			if n := calls.Count(""); n > tc.maxCalls {
				t.Errorf("%d API calls %v, want at most %d", n, calls.Calls(), tc.maxCalls)
			}
			// A conditional patch the API server refused (422) writes nothing: judge by the state.
			if evs, _ := kube.CoreV1().Events(apifake.Namespace).List(context.Background(), metav1.ListOptions{}); (len(evs.Items) > 0) != tc.wantWrite {
				t.Errorf("events %d, want any: %v (calls %v)", len(evs.Items), tc.wantWrite, calls.Calls())
			}
			tr, err := argo.ArgoprojV1alpha1().WorkflowTaskResults(apifake.Namespace).Get(context.Background(), apifake.NodeID, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			got, err := argo.ArgoprojV1alpha1().Workflows(apifake.Namespace).Get(context.Background(), apifake.WorkflowName, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			completed := tr.Labels[argoworkflow.LabelReportOutputsCompleted] == "true"
			if completed != tc.repaired || repair.HasRecord(got, apifake.NodeID) != tc.repaired {
				t.Errorf("task result completed %v, recorded %v; want both %v", completed, repair.HasRecord(got, apifake.NodeID), tc.repaired)
			}
			if !tc.repaired && (tr.Annotations[argoworkflow.AnnotationRepaired] != "" || got.ResourceVersion != wf.ResourceVersion) {
				t.Errorf("out-of-scope objects changed: task result %v, workflow rv %s → %s", tr.Annotations, wf.ResourceVersion, got.ResourceVersion)
			}
		})
	}
}

// defaultConfig is the configuration with every default, as Load reads it from an empty
// environment.
func defaultConfig(t *testing.T) *config.Config {
	t.Helper()
	for _, k := range []string{"ADH_NAMESPACES", "ADH_EXCLUDED_NAMESPACES", "ADH_INSTANCE_ID", "ADH_ALLOWED_SOURCES", "ADH_DRY_RUN"} {
		t.Setenv(k, "") // restored after the test
		_ = os.Unsetenv(k)
	}
	cfg, err := config.Load()
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// deliver posts the event to the handler as the broker does (binary mode) and returns the answer.
func deliver(t *testing.T, h http.Handler, ev event.Event) (int, string) {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/", nil)
	if err := cehttp.WriteRequest(context.Background(), binding.ToMessage(&ev), req); err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}

// TestTokenReviewsHaveTheirOwnBudget: Build gives the sender's TokenReviews a client of their own
// (TokenReviewQPS/Burst): a flood of junk tokens that empties its bucket leaves the repairs'
// bucket (ADH_KUBE_QPS/BURST, shared by the Kubernetes, Argo and dynamic clients) untouched.
func TestTokenReviewsHaveTheirOwnBudget(t *testing.T) {
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kc, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
users: [{name: u, user: {token: t}}]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := defaultConfig(t)
	p, err := wiring.Build(cfg, wiring.Options{Kubeconfig: kc})
	if err != nil {
		t.Fatal(err)
	}
	repairs := p.Clients.Kube.CoreV1().RESTClient().GetRateLimiter()
	reviews := p.Sender.Kube.AuthenticationV1().RESTClient().GetRateLimiter()
	for _, c := range []struct {
		name       string
		limiter    flowcontrol.RateLimiter
		qps        float32
		burst      int
		sharedWith flowcontrol.RateLimiter
	}{
		{"repairs (ADH_KUBE_QPS)", repairs, cfg.KubeQPS, cfg.KubeBurst, p.Clients.Argo.ArgoprojV1alpha1().RESTClient().GetRateLimiter()},
		{"token reviews", reviews, wiring.TokenReviewQPS, wiring.TokenReviewBurst, p.Clients.TokenReviews.AuthenticationV1().RESTClient().GetRateLimiter()},
	} {
		if c.limiter == nil {
			t.Fatalf("%s: no rate limiter", c.name)
		}
		if c.limiter.QPS() != c.qps || c.limiter != c.sharedWith {
			t.Errorf("%s: QPS %v, want %v (burst %d), one limiter for its clients", c.name, c.limiter.QPS(), c.qps, c.burst)
		}
	}
	if repairs == reviews {
		t.Fatal("the TokenReviews share the repairs' rate limiter")
	}
	// A flood empties the reviews' bucket...
	for range wiring.TokenReviewBurst {
		reviews.TryAccept()
	}
	if reviews.TryAccept() {
		t.Error("the reviews' bucket is not bounded by TokenReviewBurst")
	}
	// ...and the repairs' bucket still holds its whole burst.
	for i := range cfg.KubeBurst {
		if !repairs.TryAccept() {
			t.Fatalf("the repairs' bucket was spent by the reviews: empty after %d", i)
		}
	}
}

// TestNotificationsFollowTheSink: the function sends one CloudEvent per repair to
// ADH_NOTIFICATION_SINK, else to the K_SINK a SinkBinding injects, else nowhere, and says so once
// at start; an unreachable sink changes neither the answer nor the repair, and is counted.
func TestNotificationsFollowTheSink(t *testing.T) {
	cases := []struct {
		name    string
		setting bool   // ADH_NOTIFICATION_SINK names the receiver
		kSink   bool   // K_SINK names the receiver
		sink    string // ADH_NOTIFICATION_SINK, when not the receiver
		on      bool
		from    string
		result  string // counted for the repair's notification
		events  int    // received
	}{
		{name: "no sink: off, nothing sent", events: 0},
		{name: "ADH_NOTIFICATION_SINK", setting: true, on: true, from: "ADH_NOTIFICATION_SINK", result: metrics.NotificationSent, events: 1},
		{name: "K_SINK of a SinkBinding", kSink: true, on: true, from: "K_SINK", result: metrics.NotificationSent, events: 1},
		{name: "sink unreachable: the answer and the repair unchanged", sink: notifytest.Unreachable(t), on: true, from: "ADH_NOTIFICATION_SINK", result: metrics.NotificationFailed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := defaultConfig(t)
			t.Setenv("K_SINK", "")
			_ = os.Unsetenv("K_SINK")
			receiver := notifytest.NewReceiver(t)
			switch {
			case tc.setting:
				cfg.NotificationSink = receiver.URL
			case tc.sink != "":
				cfg.NotificationSink = tc.sink
			case tc.kSink:
				t.Setenv("K_SINK", receiver.URL)
			}
			c := apifake.NewCluster(apifake.Workflow(), apifake.TaskResult("false"))
			rec := metrics.New()
			core, logs := observer.New(zap.InfoLevel)
			p := wiring.FromClients(cfg, &wiring.Clients{Kube: c.Kube, Argo: c.Argo, REST: c.REST()}, rec, zap.New(core).Sugar())
			if (p.Notifier != nil) != tc.on {
				t.Fatalf("notifier %v, want on: %v", p.Notifier, tc.on)
			}
			said := logs.FilterMessageSnippet("notifications o").All()
			if len(said) != 1 || strings.HasSuffix(said[0].Message, "on") != tc.on || (tc.on && said[0].ContextMap()["from"] != tc.from) {
				t.Errorf("start logged %v, want one line saying on: %v from %q", said, tc.on, tc.from)
			}
			if code, body := deliver(t, p.Handler, eventingtest.Load(t, "pod-delete-evicted.json")); code != http.StatusOK {
				t.Fatalf("answer %d %q, want 200", code, body)
			}
			if !repair.HasRecord(c.GetWorkflow(t), apifake.NodeID) || c.GetTaskResult(t).Labels[argoworkflow.LabelReportOutputsCompleted] != "true" {
				t.Error("not repaired")
			}
			if got := receiver.Received(); len(got) != tc.events || (tc.events == 1 && got[0].Event.Type() != notify.TypeRepair) {
				t.Errorf("received %v, want %d repair events", got, tc.events)
			}
			if tc.result != "" {
				if n := notifytest.Counted(t, rec, notify.TypeRepair, tc.result); n != "1" {
					t.Errorf("%s counted %s, want 1", tc.result, n)
				}
			}
		})
	}
}
