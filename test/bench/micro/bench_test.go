package micro

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	kubefake "k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	argofake "github.com/argoproj/argo-workflows/v3/pkg/client/clientset/versioned/fake"

	"function/config"
	"function/handlers"
	"function/internal/argoworkflow"
	"function/internal/wiring"
	"function/test/bench/fixture"
)

// counter counts the API calls of the fake clientsets and notes when the task result was
// patched (the repair itself).
type counter struct {
	n       atomic.Int64
	patched atomic.Int64 // unix nanoseconds of the first task-result patch
}

func (c *counter) reactor(a k8stesting.Action) (bool, runtime.Object, error) {
	c.n.Add(1)
	if a.GetVerb() == "patch" && a.GetResource().Resource == "workflowtaskresults" {
		c.patched.CompareAndSwap(0, time.Now().UnixNano())
	}
	return false, nil, nil
}

// newHandler builds the handler as the function does (wiring.FromClients, default configuration) over
// fake clientsets holding objs, counting every call.
func newHandler(tb testing.TB, calls *counter, argoObjs ...runtime.Object) (*handlers.Handler, *argofake.Clientset) {
	tb.Helper()
	cfg, err := config.Load()
	if err != nil {
		tb.Fatal(err)
	}
	kube, argo := kubefake.NewSimpleClientset(), argofake.NewSimpleClientset(argoObjs...)
	dyn := dynamicfake.NewSimpleDynamicClient(runtime.NewScheme())
	kube.PrependReactor("*", "*", calls.reactor)
	argo.PrependReactor("*", "*", calls.reactor)
	dyn.PrependReactor("*", "*", calls.reactor)
	return wiring.FromClients(cfg, &wiring.Clients{Kube: kube, Argo: argo, Dynamic: dyn}, nil, nil).Handler, argo
}

func status(res error) string {
	if res == nil {
		return ""
	}
	return res.Error()
}

// BenchmarkIrrelevantEvent: a 30 KiB Resource-mode delete of a pod without the workflow label
// (eventing/testdata/pod-delete-nonworkflow.json), whole Handle. Target ≤ 20 µs/op, 0 API calls.
func BenchmarkIrrelevantEvent(b *testing.B) { benchHandle(b, "pod-delete-nonworkflow.json") }

// BenchmarkHealthyWorkflowPodUpdate: the commonest workflow-pod event, an update of a running
// pod (eventing/testdata/pod-update-running.json), decoded and dismissed.
func BenchmarkHealthyWorkflowPodUpdate(b *testing.B) { benchHandle(b, "pod-update-running.json") }

// benchHandle runs the whole Handle on one fixture event, answered 200; an API call fails it,
// as these events must cost none.
func benchHandle(b *testing.B, fixtureFile string) {
	calls := &counter{}
	h, _ := newHandler(b, calls)
	e, err := fixture.LoadEvent(fixtureFile)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(e.Data())))
	b.ReportAllocs()
	for b.Loop() {
		if res := h.Handle(context.Background(), e); res != nil {
			b.Fatal(status(res))
		}
	}
	b.ReportMetric(float64(calls.n.Load())/float64(b.N), "api-calls/op")
	if n := calls.n.Load(); n != 0 {
		b.Fatalf("%s: %d API calls", fixtureFile, n)
	}
}

const bigNodes = 5000

// BenchmarkCompressed5000Repair: the pod delete event of a Running node of a workflow with 5,000
// nodes in status.compressedNodes, whole Handle: read, decide (the nodes are inflated), complete
// the task result, record. Each op starts from fresh fake clientsets (built outside the timer).
// ns-until-patched/op is the part until the task result's patch was sent (decide and repair,
// before the record). Target ≤ 100 ms.
func BenchmarkCompressed5000Repair(b *testing.B) {
	big, err := fixture.BigWorkflow("argo", "big-5000", bigNodes, "")
	if err != nil {
		b.Fatal(err)
	}
	e, err := fixture.PodDeleteEvent(big.Workflow, big.NodeID, big.PodName)
	if err != nil {
		b.Fatal(err)
	}
	// One untimed op first: the first Handle of a process pays one-time initialisations (type
	// caches of encoding/json and the schemes); the cold start (6) measures those.
	warm, _ := newHandler(b, &counter{}, big.Workflow.DeepCopy(), fixture.TaskResult(big.Workflow, big.NodeID))
	if res := warm.Handle(context.Background(), e.Clone()); res != nil {
		b.Fatal(status(res))
	}
	b.ReportAllocs()
	b.ResetTimer()
	var total int64
	var toRepair time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		calls := &counter{}
		h, argo := newHandler(b, calls, big.Workflow.DeepCopy(), fixture.TaskResult(big.Workflow, big.NodeID))
		ev := e.Clone()
		b.StartTimer()
		start := time.Now()
		res := h.Handle(context.Background(), ev)
		b.StopTimer()
		toRepair += time.Duration(calls.patched.Load() - start.UnixNano())
		if res != nil {
			b.Fatal(status(res))
		}
		total += calls.n.Load() // before the check's own read
		checkCompleted(b, argo, big)
		b.StartTimer()
	}
	b.ReportMetric(float64(total)/float64(b.N), "api-calls/op")
	b.ReportMetric(float64(toRepair.Nanoseconds())/float64(b.N), "ns-until-patched/op")
	b.ReportMetric(float64(big.Compressed), "compressed-bytes")
	b.ReportMetric(float64(big.NodesJSON), "nodes-json-bytes")
}

// BenchmarkCompressed5000Inflate: the decision's own cost on such a workflow, reading its nodes
// (base64, gunzip, JSON of 5,000 nodes) — the part that grows with the node count.
func BenchmarkCompressed5000Inflate(b *testing.B) {
	big, err := fixture.BigWorkflow("argo", "big-5000", bigNodes, "")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		nodes, storage, err := argoworkflow.Nodes(big.Workflow)
		if err != nil || storage != argoworkflow.Compressed || len(nodes) != bigNodes {
			b.Fatalf("%d nodes in %s: %v", len(nodes), storage, err)
		}
	}
}

func checkCompleted(b *testing.B, argo *argofake.Clientset, big *fixture.Big) {
	tr, err := argo.ArgoprojV1alpha1().WorkflowTaskResults(big.Workflow.Namespace).Get(context.Background(), big.NodeID, metav1.GetOptions{})
	if err != nil {
		b.Fatal(err)
	}
	if tr.Labels[argoworkflow.LabelReportOutputsCompleted] != "true" {
		b.Fatalf("task result %s not completed", big.NodeID)
	}
}
