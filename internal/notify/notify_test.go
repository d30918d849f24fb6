package notify_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"k8s.io/apimachinery/pkg/runtime"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"

	"function/config"
	"function/eventing"
	"function/eventing/families"
	"function/internal/apifake"
	"function/internal/argoworkflow"
	"function/internal/metrics"
	"function/internal/notify"
	"function/internal/notify/notifytest"
	"function/internal/repair"
)

var ctx = context.Background()

// now is the function's clock in these tests: 6 min 5 s into the workflow.
var now = apifake.T0.Add(6*time.Minute + 5*time.Second)

// emitterTo is the Emitter the function builds (wiring), to sink.
func emitterTo(t *testing.T, sink notify.Sink, timeout time.Duration, rec *metrics.Recorder, log *zap.SugaredLogger) *notify.Emitter {
	t.Helper()
	if sink.From == "" {
		sink.From = notify.FromSetting
	}
	e, err := notify.New(notify.Options{Sink: sink, Namespace: "argo-disruption-handler", Timeout: timeout, Metrics: rec, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// repairerWith is the function's Repairer over the fake API, telling n.
func repairerWith(c *apifake.Cluster, n repair.Notifier, dryRun bool) *repair.Repairer {
	return repair.New(c.Kube, c.Argo, repair.Options{
		Policy: repair.Policy{Scope: config.Scope{Excluded: []string{"kube-system"}}, NodeErrorGrace: time.Minute},
		DryRun: dryRun, Host: "test-host", Now: func() time.Time { return now }, Notifier: n,
	})
}

// evictedPodDeleted is the target of a Karpenter drain's pod delete event.
func evictedPodDeleted(t *testing.T) repair.Target {
	t.Helper()
	tg, err := repair.TargetFromPod(apifake.Pod(apifake.Evicted, apifake.Terminating, apifake.Failed), now, "pod delete event")
	if err != nil {
		t.Fatal(err)
	}
	return tg
}

// spotInterrupted is the warning a Karpenter SpotInterrupted Event on the pod's Node writes.
var spotInterrupted = repair.Warning{Source: "karpenter", Reason: "SpotInterrupted", Message: "Spot interruption warning was triggered",
	Node: apifake.HostName, Time: apifake.T0.Add(5 * time.Minute)}

// TestEventsAsReceived: the sink receives exactly the documented event for a repair and for a
// warning (docs/notifications.md shows the same), through the SDK's own receiver.
func TestEventsAsReceived(t *testing.T) {
	cases := []struct {
		name    string
		objs    []runtime.Object
		dryRun  bool
		act     func(*testing.T, *repair.Repairer) error
		ceType  string
		id      string
		ext     map[string]string
		data    string
		noCount bool
	}{
		{
			name: "repair: evicted pod deleted, its task result completed",
			objs: []runtime.Object{apifake.Workflow(), apifake.TaskResult("false")},
			act: func(t *testing.T, r *repair.Repairer) error {
				_, err := r.Repair(ctx, evictedPodDeleted(t))
				return err
			},
			ceType: notify.TypeRepair, id: "repair/" + apifake.WorkflowUID + "/" + apifake.NodeID,
			ext: map[string]string{"namespace": "argo", "reason": "EvictionByEvictionAPI", "dryrun": "false"},
			data: `{"workflow":{"namespace":"argo","name":"nightly-etl-7k2xq","uid":"0d7f6c1e-5b0e-4f55-9c55-0b9c1a3e8f21"},
				"nodeID":"nightly-etl-7k2xq-1770056762","pod":"nightly-etl-7k2xq-extract-1770056762","podUID":"pod-uid-1",
				"actions":["complete-task-result"],"reason":"EvictionByEvictionAPI","message":"Eviction API: evicting",
				"signal":"pod delete event","dryRun":false,"time":"2026-11-26T09:20:07Z"}`,
		},
		{
			name: "repair in dry run: told, marked as such",
			objs: []runtime.Object{apifake.Workflow(), apifake.TaskResult("false")}, dryRun: true,
			act: func(t *testing.T, r *repair.Repairer) error {
				_, err := r.Repair(ctx, evictedPodDeleted(t))
				return err
			},
			ceType: notify.TypeRepair, id: "repair/" + apifake.WorkflowUID + "/" + apifake.NodeID,
			ext: map[string]string{"namespace": "argo", "reason": "EvictionByEvictionAPI", "dryrun": "true"},
			data: `{"workflow":{"namespace":"argo","name":"nightly-etl-7k2xq","uid":"0d7f6c1e-5b0e-4f55-9c55-0b9c1a3e8f21"},
				"nodeID":"nightly-etl-7k2xq-1770056762","pod":"nightly-etl-7k2xq-extract-1770056762","podUID":"pod-uid-1",
				"actions":["complete-task-result"],"reason":"EvictionByEvictionAPI","message":"Eviction API: evicting",
				"signal":"pod delete event","dryRun":true,"time":"2026-11-26T09:20:07Z"}`,
		},
		{
			name: "warning: Karpenter announced a spot interruption of the pod's Node",
			objs: []runtime.Object{apifake.Workflow(), apifake.Pod()},
			act: func(t *testing.T, r *repair.Repairer) error {
				return r.RecordWarning(ctx, apifake.Pod(), spotInterrupted)
			},
			ceType: notify.TypeWarning, id: "warning/" + apifake.WorkflowUID + "/" + apifake.PodName + "/SpotInterrupted",
			ext: map[string]string{"namespace": "argo", "reason": "SpotInterrupted", "dryrun": "false"},
			data: `{"workflow":{"namespace":"argo","name":"nightly-etl-7k2xq","uid":"0d7f6c1e-5b0e-4f55-9c55-0b9c1a3e8f21"},
				"nodeID":"nightly-etl-7k2xq-1770056762","pod":"nightly-etl-7k2xq-extract-1770056762","podUID":"pod-uid-1",
				"node":"ip-10-0-1-23.eu-west-1.compute.internal","actions":["record-warning"],"reason":"SpotInterrupted",
				"message":"Spot interruption warning was triggered","signal":"karpenter SpotInterrupted","dryRun":false,
				"time":"2026-11-26T09:19:02Z"}`,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sink := notifytest.NewReceiver(t)
			rec := metrics.New()
			r := repairerWith(apifake.NewCluster(tc.objs...), emitterTo(t, notify.Sink{URL: sink.URL}, 2*time.Second, rec, nil), tc.dryRun)
			if err := tc.act(t, r); err != nil {
				t.Fatal(err)
			}
			got := sink.Received()
			if len(got) != 1 {
				t.Fatalf("received %d events, want 1", len(got))
			}
			e := got[0].Event
			if e.SpecVersion() != "1.0" || e.Type() != tc.ceType || e.ID() != tc.id || e.Source() != "argo-disruption-handler/argo-disruption-handler" ||
				e.Subject() != "argo/nightly-etl-7k2xq" || e.DataContentType() != "application/json" {
				t.Errorf("attributes: %s", e.Context)
			}
			var want struct {
				Time time.Time `json:"time"`
			}
			_ = json.Unmarshal([]byte(tc.data), &want)
			if !e.Time().Equal(want.Time) {
				t.Errorf("time %s, want the data's %s", e.Time(), want.Time)
			}
			ext := map[string]string{}
			for k, v := range e.Extensions() {
				ext[k] = fmt.Sprint(v)
			}
			if !reflect.DeepEqual(ext, tc.ext) {
				t.Errorf("extensions %v, want %v", ext, tc.ext)
			}
			jsonEqual(t, e.Data(), tc.data)
			if got[0].Authorization != "" {
				t.Errorf("Authorization %q sent to a sink of ADH_NOTIFICATION_SINK", got[0].Authorization)
			}
			if n := notifytest.Counted(t, rec, tc.ceType, metrics.NotificationSent); n != "1" {
				t.Errorf("sent counted %s, want 1", n)
			}
		})
	}
}

func jsonEqual(t *testing.T, got []byte, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("data %s: %v", got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("data:\n  %s\nwant:\n  %s", got, strings.Join(strings.Fields(want), ""))
	}
}

// TestSinkFailuresNeverChangeTheRepair: a sink that refuses, is unreachable or never answers
// costs the repair at most the timeout; the repair's result and writes are those of a function
// without notifications, and the failure is counted and logged with the workflow, node, pod and
// reason.
func TestSinkFailuresNeverChangeTheRepair(t *testing.T) {
	const timeout = 300 * time.Millisecond
	refusing := func(t testing.TB) string {
		s := notifytest.NewReceiver(t)
		s.AnswerWith(http.StatusServiceUnavailable)
		return s.URL
	}
	cases := []struct {
		name  string
		sink  func(testing.TB) string
		error string // in the logged error
	}{
		{"sink answers 503", refusing, "503"},
		{"sink unreachable", notifytest.Unreachable, "connection refused"},
		{"sink never answers", notifytest.Hanging, "deadline exceeded"},
	}
	// What the repair does with nobody to tell.
	bare := apifake.NewCluster(apifake.Workflow(), apifake.TaskResult("false"))
	want, err := repairerWith(bare, nil, false).Repair(ctx, evictedPodDeleted(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := metrics.New()
			core, logs := observer.New(zap.InfoLevel)
			c := apifake.NewCluster(apifake.Workflow(), apifake.TaskResult("false"))
			r := repairerWith(c, emitterTo(t, notify.Sink{URL: tc.sink(t)}, timeout, rec, zap.New(core).Sugar()), false)
			began := time.Now()
			res, err := r.Repair(ctx, evictedPodDeleted(t))
			if took := time.Since(began); took > timeout+time.Second {
				t.Errorf("the repair took %s with a timeout of %s", took, timeout)
			}
			if err != nil || !slices.Equal(res.Done, want.Done) || res.Recorded != want.Recorded || !reflect.DeepEqual(res.Plan, want.Plan) {
				t.Errorf("result %+v (err %v), want %+v as without notifications", res, err, want)
			}
			if !slices.Equal(c.Writes(), bare.Writes()) {
				t.Errorf("writes %v, want %v", c.Writes(), bare.Writes())
			}
			if !repair.HasRecord(c.GetWorkflow(t), apifake.NodeID) || c.GetTaskResult(t).Labels[argoworkflow.LabelReportOutputsCompleted] != "true" {
				t.Error("the repair was not written")
			}
			if n := notifytest.Counted(t, rec, notify.TypeRepair, metrics.NotificationFailed); n != "1" {
				t.Errorf("failed counted %s, want 1", n)
			}
			failed := logs.FilterMessage("notification not sent").All()
			if len(failed) != 1 {
				t.Fatalf("%d failure lines, want 1: %v", len(failed), logs.All())
			}
			f := failed[0].ContextMap()
			if f["workflow"] != "argo/nightly-etl-7k2xq" || f["node"] != apifake.NodeID || f["pod"] != apifake.PodName || f["reason"] != "EvictionByEvictionAPI" ||
				!strings.Contains(fmt.Sprint(f["error"]), tc.error) || !strings.Contains(fmt.Sprint(f["error"]), "argo/nightly-etl-7k2xq") {
				t.Errorf("failure logged with %v", f)
			}
		})
	}
}

// TestTimeoutPausesSending: after a send took the whole timeout, the next ones are skipped
// (counted and logged, not tried) for PauseAfterTimeout; a quick failure pauses nothing.
func TestTimeoutPausesSending(t *testing.T) {
	wf := apifake.Workflow()
	rec := repair.Record{Pod: apifake.PodName, NodeID: apifake.NodeID, Reason: "NodeDeleted", Actions: []string{"complete-task-result"}, Trigger: "node delete event", Time: now}
	cases := []struct {
		name    string
		sink    func(testing.TB) string
		results []string // of three notifications in a row
	}{
		{"sink never answers: tried once, then skipped", notifytest.Hanging, []string{metrics.NotificationFailed, metrics.NotificationSkipped, metrics.NotificationSkipped}},
		{"sink unreachable: every one tried", notifytest.Unreachable, []string{metrics.NotificationFailed, metrics.NotificationFailed, metrics.NotificationFailed}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := metrics.New()
			e := emitterTo(t, notify.Sink{URL: tc.sink(t)}, 100*time.Millisecond, m, nil)
			want := map[string]int{}
			for _, r := range tc.results {
				e.Repaired(ctx, wf, rec)
				want[r]++
			}
			for _, r := range metrics.NotificationResults {
				if got := notifytest.Counted(t, m, notify.TypeRepair, r); got != fmt.Sprint(want[r]) {
					t.Errorf("%s counted %s, want %d", r, got, want[r])
				}
			}
		})
	}
}

// TestCallersDeadlineBoundsTheSend: a notification never holds the answer past the event's
// deadline, and a sender that hung up does not cancel it.
func TestCallersDeadlineBoundsTheSend(t *testing.T) {
	wf := apifake.Workflow()
	rec := repair.Record{Pod: apifake.PodName, NodeID: apifake.NodeID, Reason: "unknown", Actions: []string{"complete-task-result"}, Trigger: "sweep", Time: now}
	t.Run("deadline sooner than the timeout", func(t *testing.T) {
		e := emitterTo(t, notify.Sink{URL: notifytest.Hanging(t)}, 10*time.Second, nil, nil)
		dctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		began := time.Now()
		e.Repaired(dctx, wf, rec)
		if took := time.Since(began); took > 2*time.Second {
			t.Errorf("the send took %s past a deadline of 100ms", took)
		}
	})
	t.Run("sender hung up", func(t *testing.T) {
		sink := notifytest.NewReceiver(t)
		e := emitterTo(t, notify.Sink{URL: sink.URL}, 2*time.Second, nil, nil)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		e.Repaired(cctx, wf, rec)
		if n := len(sink.Received()); n != 1 {
			t.Errorf("received %d, want 1", n)
		}
	})
}

// TestBearerFromTheSinkBindingsTokenFile: with a SinkBinding's sink, the OIDC token file is read
// for every send (the SinkBinding controller renews it); no file, no header.
func TestBearerFromTheSinkBindingsTokenFile(t *testing.T) {
	sink := notifytest.NewReceiver(t)
	token := filepath.Join(t.TempDir(), "token")
	e := emitterTo(t, notify.Sink{URL: sink.URL, From: notify.FromSinkBinding, TokenFile: token}, 2*time.Second, nil, nil)
	wf, pod := apifake.Workflow(), apifake.Pod()
	steps := []struct {
		file string // "": no file
		want string
	}{
		{"eyJhbGciOiJSUzI1NiJ9.first.sig\n", "Bearer eyJhbGciOiJSUzI1NiJ9.first.sig"},
		{"eyJhbGciOiJSUzI1NiJ9.renewed.sig", "Bearer eyJhbGciOiJSUzI1NiJ9.renewed.sig"},
		{"", ""},
	}
	for i, s := range steps {
		_ = os.Remove(token)
		if s.file != "" {
			if err := os.WriteFile(token, []byte(s.file), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		e.Warned(ctx, wf, pod, spotInterrupted, false)
		got := sink.Received()
		if len(got) != i+1 {
			t.Fatalf("step %d: received %d events", i, len(got))
		}
		if got[i].Authorization != s.want {
			t.Errorf("step %d: Authorization %q, want %q", i, got[i].Authorization, s.want)
		}
	}
}

// TestSinkFrom: ADH_NOTIFICATION_SINK wins; else the SinkBinding's K_SINK, with its token file
// and certificates; else none (notifications off).
func TestSinkFrom(t *testing.T) {
	const broker = "http://broker-ingress.knative-eventing.svc.cluster.local/argo-disruption-handler/default"
	env := func(kv ...string) func(string) string {
		return func(k string) string {
			for i := 0; i+1 < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1]
				}
			}
			return ""
		}
	}
	cases := []struct {
		name       string
		configured string
		env        func(string) string
		want       notify.Sink
	}{
		{"nothing: off", "", env(), notify.Sink{}},
		{"SinkBinding", "", env("K_SINK", broker, "K_CA_CERTS", "PEM"), notify.Sink{URL: broker, From: "K_SINK", TokenFile: "/oidc/token", CACerts: "PEM"}},
		{"setting wins, without the SinkBinding's token", "https://alerts.example/ce", env("K_SINK", broker), notify.Sink{URL: "https://alerts.example/ce", From: "ADH_NOTIFICATION_SINK"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := notify.SinkFrom(tc.configured, tc.env); got != tc.want {
				t.Errorf("sink %+v, want %+v", got, tc.want)
			}
		})
	}
	for _, bad := range []notify.Sink{{URL: "broker-ingress/ns/default"}, {URL: "ftp://x/y"}, {URL: broker, CACerts: "not PEM"}} {
		if _, err := notify.New(notify.Options{Sink: bad}); err == nil {
			t.Errorf("sink %+v accepted", bad)
		}
	}
}

// TestTypesAreNotDecoded: no family of the function's registry decodes a notification, whatever
// it carries: one routed back to the function is refused (400), never acted on.
func TestTypesAreNotDecoded(t *testing.T) {
	reg := families.Registry()
	wf, pod := apifake.Workflow(), apifake.Pod()
	rec := repair.Record{Pod: pod.Name, NodeID: apifake.NodeID, Reason: "unknown", Trigger: "sweep", Time: now}
	events := []struct {
		name string
		e    interface {
			Type() string
			Extensions() map[string]any
		}
	}{
		{"repair", notify.RepairEvent("argo-disruption-handler/argo-disruption-handler", wf, rec)},
		{"warning", notify.WarningEvent("argo-disruption-handler/argo-disruption-handler", wf, pod, spotInterrupted, false)},
	}
	for _, ev := range events {
		if reg.Knows(ev.e.Type()) {
			t.Errorf("%s: type %s is decoded by the registry", ev.name, ev.e.Type())
		}
		if !slices.Contains(notify.Types, ev.e.Type()) {
			t.Errorf("%s: type %s not in notify.Types", ev.name, ev.e.Type())
		}
		// The ApiServerSource's kind extension chooses decoders and a Trigger filter: never ours.
		if _, ok := ev.e.Extensions()["kind"]; ok {
			t.Errorf("%s: carries a kind extension", ev.name)
		}
	}
	for _, typ := range notify.Types {
		if reg.Knows(typ) {
			t.Errorf("type %s is decoded by the registry", typ)
		}
	}
	e := notify.RepairEvent("argo-disruption-handler/argo-disruption-handler", wf, rec)
	if _, err := reg.Decode(e); !errors.Is(err, eventing.ErrUnknownType) {
		t.Errorf("decoding a notification: %v, want ErrUnknownType", err)
	}
	e.SetExtension("kind", "Pod") // even dressed as an ApiServerSource event
	if _, err := reg.Decode(e); !errors.Is(err, eventing.ErrUnknownType) {
		t.Errorf("decoding a notification with kind Pod: %v, want ErrUnknownType", err)
	}
}

// An Emitter of nil (no sink) tells nothing and does not panic.
func TestNilEmitter(t *testing.T) {
	var e *notify.Emitter
	e.Repaired(ctx, apifake.Workflow(), repair.Record{})
	e.Warned(ctx, &wfv1.Workflow{}, apifake.Pod(), repair.Warning{}, false)
}
