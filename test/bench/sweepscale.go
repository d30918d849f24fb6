//go:build e2e

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"

	"function/internal/argoworkflow"
	"function/internal/localcluster/cesink"
	"function/internal/localcluster/scenario"
	"function/test/bench/fixture"
)

const (
	nsSweep      = "bench-sweep"
	nsSweepState = "bench-sweep-state"
	// sweepInstance keeps the sweep's workflows away from the Argo controller of the stack (it
	// owns only workflows without an instance ID): they stay exactly as written.
	sweepInstance = "bench-sweep"
)

// sweepScaleResult is the sweep over many Running workflows: the function binary, fed PingSource
// ticks one after another, until every stuck workflow is repaired.
type sweepScaleResult struct {
	Workflows, Big, BigNodes, Stuck int
	Budget                          time.Duration
	PageSize                        string
	SetupTook                       time.Duration
	Ticks                           []sweepTick
	// RepairedBy is the tick (1-based) after which all stuck task results were complete; 0: not
	// within the ticks run.
	RepairedBy int
	RSSIdle    memory
	RSSMax     int64
	End        memory
}

// sweepTick is one PingSource tick as the function answered and logged it.
type sweepTick struct {
	Status    int
	Took      time.Duration
	Workflows int
	Stuck     int
	Complete  bool
	Errors    int
	Duration  time.Duration // the sweep's own, from its log
	Repaired  int           // stuck task results complete after the tick
	RSSMax    int64
}

// runSweepScale writes n Running workflows (big of them with bigNodes nodes), stuck of them with
// their running pod gone and the task result incomplete, then ticks the function until all are
// repaired or maxTicks passed.
func runSweepScale(ctx context.Context, e *env, bin string, n, big, bigNodes, stuck, maxTicks int) (*sweepScaleResult, *scenario.Function, error) {
	res := &sweepScaleResult{Workflows: n, Big: big, BigNodes: bigNodes, Stuck: stuck, Budget: 20 * time.Second, PageSize: "100 (default)"}
	for _, ns := range []string{nsSweep, nsSweepState} {
		if err := e.c.EnsureNamespace(ctx, ns); err != nil {
			return nil, nil, err
		}
	}
	begin := time.Now()
	stuckIDs, err := e.writeSweepWorkflows(ctx, n, big, bigNodes, stuck)
	if err != nil {
		return nil, nil, err
	}
	res.SetupTook = time.Since(begin)
	e.logf("sweep: %d workflows (%d of %d nodes, %d stuck) written in %.1fs", n, big, bigNodes, stuck, res.SetupTook.Seconds())

	fn, err := scenario.ExecFunction(bin, e.c.Kubeconfig(), filepath.Join(e.c.LogDir(), "function-"+nsSweep+".log"), map[string]string{
		"ADH_NAMESPACES": nsSweep, "ADH_INSTANCE_ID": sweepInstance, "ADH_STATE_NAMESPACE": nsSweepState,
		"ADH_LOG_LEVEL": "info", "ADH_SWEEP_BUDGET": res.Budget.String()})
	if err != nil {
		return nil, nil, err
	}
	if _, _, err := fn.WaitReady(ctx, 20*time.Second, time.Millisecond); err != nil {
		return nil, fn, err
	}
	time.Sleep(time.Second)
	res.RSSIdle, _ = readMemory(fn.PID())
	for i := 1; i <= maxTicks && res.RepairedBy == 0; i++ {
		tk, err := e.sweepTick(ctx, fn, stuckIDs)
		if err != nil {
			return res, fn, err
		}
		res.Ticks = append(res.Ticks, tk)
		res.RSSMax = max(res.RSSMax, tk.RSSMax)
		e.logf("sweep: tick %d: %d in %.1fs, %d workflows, %d stuck, %d/%d repaired, RSS max %s", i, tk.Status, tk.Took.Seconds(), tk.Workflows, tk.Stuck, tk.Repaired, stuck, mib(tk.RSSMax))
		if tk.Repaired == stuck {
			res.RepairedBy = i
		}
	}
	res.End, _ = readMemory(fn.PID())
	return res, fn, nil
}

// sweepTick posts one PingSource tick, samples the function's RSS while it runs, and reads what
// the sweep logged.
func (e *env) sweepTick(ctx context.Context, fn *scenario.Function, stuckIDs []string) (sweepTick, error) {
	var tk sweepTick
	ev, err := fixture.LoadEvent("ping-sweep.json")
	if err != nil {
		return tk, err
	}
	ev.SetID(fmt.Sprintf("bench-sweep-%d", time.Now().UnixNano()))
	ev.SetTime(time.Now())
	logOff := fileSize(fn.LogPath)
	stopRSS := sampleRSS(fn.PID())
	t0 := time.Now()
	tk.Status, _, err = cesink.Deliver(ctx, fn.URL, ev, nil)
	tk.Took = time.Since(t0)
	tk.RSSMax = stopRSS()
	if err != nil {
		return tk, fmt.Errorf("posting a sweep tick: %w", err)
	}
	readSweepDone(fn.LogPath, logOff, &tk)
	for _, id := range stuckIDs {
		if e.taskResultCompleted(ctx, nsSweep, id) {
			tk.Repaired++
		}
	}
	return tk, nil
}

// readSweepDone fills tk from the last "sweep done" line the function logged after off.
func readSweepDone(path string, off int64, tk *sweepTick) {
	b, err := os.ReadFile(path)
	if err != nil || int64(len(b)) < off {
		return
	}
	for _, line := range strings.Split(string(b[off:]), "\n") {
		var l struct {
			Msg       string `json:"msg"`
			Workflows int    `json:"workflows"`
			Stuck     int    `json:"stuck"`
			Complete  bool   `json:"complete"`
			Errors    int    `json:"errors"`
			// Duration is seconds or a Go duration, as the log's encoder writes it.
			Duration json.RawMessage `json:"duration"`
		}
		if json.Unmarshal([]byte(line), &l) != nil || l.Msg != "sweep done" {
			continue
		}
		tk.Workflows, tk.Stuck, tk.Complete, tk.Errors = l.Workflows, l.Stuck, l.Complete, l.Errors
		var secs float64
		var text string
		switch {
		case json.Unmarshal(l.Duration, &secs) == nil:
			tk.Duration = time.Duration(secs * float64(time.Second))
		case json.Unmarshal(l.Duration, &text) == nil:
			tk.Duration, _ = time.ParseDuration(text)
		}
	}
}

// writeSweepWorkflows writes the workflows, their running pods and the stuck ones' task results,
// and returns the stuck nodes' IDs. Workflow i is big when i < big and stuck when it is one of
// stuck spread evenly over all.
func (e *env) writeSweepWorkflows(ctx context.Context, n, big, bigNodes, stuck int) ([]string, error) {
	every := n / max(1, stuck)
	var mu sync.Mutex
	var stuckIDs []string
	err := parallel(n, 16, func(i int) error {
		nodes := 1
		if i < big {
			nodes = bigNodes
		}
		isStuck := stuck > 0 && i%every == every-1 && i/every < stuck
		wf, runningID := sweepWorkflow(fmt.Sprintf("sweep-%05d", i), nodes)
		created, err := e.argo.ArgoprojV1alpha1().Workflows(nsSweep).Create(ctx, wf, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("creating workflow %s/%s: %w", nsSweep, wf.Name, err)
		}
		if !isStuck {
			_, err := e.kube.CoreV1().Pods(nsSweep).Create(ctx, sweepPod(created, runningID), metav1.CreateOptions{})
			return err
		}
		mu.Lock()
		stuckIDs = append(stuckIDs, runningID)
		mu.Unlock()
		_, err = e.argo.ArgoprojV1alpha1().WorkflowTaskResults(nsSweep).Create(ctx, sweepTaskResult(created, runningID), metav1.CreateOptions{})
		return err
	})
	return stuckIDs, err
}

// sweepWorkflow is a Running workflow of `nodes` Pod nodes under a Steps root: all Succeeded
// with their task results complete but the last, Running for ten minutes, whose task result
// holds the gate. It returns the workflow and the running node's ID.
func sweepWorkflow(name string, nodes int) (*wfv1.Workflow, string) {
	started := metav1.NewTime(time.Now().Add(-10 * time.Minute))
	wf := &wfv1.Workflow{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: nsSweep, Labels: map[string]string{
			argoworkflow.LabelPhase: string(wfv1.WorkflowRunning), argoworkflow.LabelInstanceID: sweepInstance}},
		Spec: wfv1.WorkflowSpec{Entrypoint: "main", Templates: []wfv1.Template{{Name: "main", Container: &corev1.Container{Image: "alpine:3.20"}}}},
		Status: wfv1.WorkflowStatus{Phase: wfv1.WorkflowRunning, StartedAt: started, Nodes: wfv1.Nodes{},
			TaskResultsCompletionStatus: map[string]bool{}},
	}
	rootID := name
	root := wfv1.NodeStatus{ID: rootID, Name: name, DisplayName: name, Type: wfv1.NodeTypeSteps, TemplateName: "main", Phase: wfv1.NodeRunning, StartedAt: started}
	var runningID string
	for j := range nodes {
		nodeName := fmt.Sprintf("%s[%d].step-%03d", name, j, j)
		id := argoworkflow.NodeID(name, nodeName)
		n := wfv1.NodeStatus{ID: id, Name: nodeName, DisplayName: fmt.Sprintf("step-%03d", j), Type: wfv1.NodeTypePod,
			TemplateName: "main", Phase: wfv1.NodeSucceeded, StartedAt: started, FinishedAt: started, BoundaryID: rootID}
		wf.Status.TaskResultsCompletionStatus[id] = true
		if j == nodes-1 {
			n.Phase, n.FinishedAt = wfv1.NodeRunning, metav1.Time{}
			wf.Status.TaskResultsCompletionStatus[id] = false
			runningID = id
		}
		root.Children = append(root.Children, id)
		wf.Status.Nodes[id] = n
	}
	wf.Status.Nodes[rootID] = root
	return wf, runningID
}

// sweepPod is the running node's pod, as Argo labels and annotates it (unscheduled: no kubelet
// is needed for the sweep to see it alive).
func sweepPod(wf *wfv1.Workflow, nodeID string) *corev1.Pod {
	n := wf.Status.Nodes[nodeID]
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:        argoworkflow.PodName(wf.Name, n.Name, n.TemplateName, nodeID, ""),
			Namespace:   wf.Namespace,
			Labels:      map[string]string{argoworkflow.LabelWorkflow: wf.Name, argoworkflow.LabelInstanceID: sweepInstance},
			Annotations: map[string]string{argoworkflow.AnnotationNodeID: nodeID, argoworkflow.AnnotationNodeName: n.Name},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "argoproj.io/v1alpha1", Kind: "Workflow", Name: wf.Name, UID: wf.UID,
				Controller: ptrTo(true), BlockOwnerDeletion: ptrTo(true)}},
		},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "main", Image: "alpine:3.20"}}},
	}
}

// sweepTaskResult is the stuck node's task result, left incomplete by a wait container that was
// taken away with its pod.
func sweepTaskResult(wf *wfv1.Workflow, nodeID string) *wfv1.WorkflowTaskResult {
	return &wfv1.WorkflowTaskResult{ObjectMeta: metav1.ObjectMeta{
		Name: nodeID, Namespace: wf.Namespace,
		Labels: map[string]string{argoworkflow.LabelWorkflow: wf.Name, argoworkflow.LabelReportOutputsCompleted: "false",
			argoworkflow.LabelInstanceID: sweepInstance},
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "argoproj.io/v1alpha1", Kind: "Workflow", Name: wf.Name, UID: types.UID(wf.UID)}},
	}}
}

// writeSweepScaleRow is the figure of the sweep at scale.
func writeSweepScaleRow(w writer, sw *sweepScaleResult) {
	const target = "all stuck found and repaired within 3 ticks; RSS ≤ 128 MiB throughout; no tick over its budget"
	if sw == nil {
		w("| 9 | sweep over 10,000 Running workflows | %s | %s | |\n", notRun, target)
		return
	}
	over := 0
	for _, tk := range sw.Ticks {
		if tk.Took > sw.Budget+5*time.Second {
			over++
		}
	}
	by := "not within the ticks run"
	if sw.RepairedBy > 0 {
		by = fmt.Sprintf("after tick **%d**", sw.RepairedBy)
	}
	w("| 9 | sweep over %d Running workflows (%d with %d nodes each, %d stuck), the function as a process fed PingSource ticks one after another (budget %s) | all %d repaired %s; RSS max **%s** (VmHWM %s); %d of %d ticks over budget + 5 s slack | %s | %s |\n",
		sw.Workflows, sw.Big, sw.BigNodes, sw.Stuck, sw.Budget, sw.Stuck, by, mib(sw.RSSMax), mib(sw.End.HWM), over, len(sw.Ticks), target,
		verdict(sw.RepairedBy > 0 && sw.RepairedBy <= 3 && sw.RSSMax <= 128<<20 && sw.End.HWM <= 128<<20 && over == 0))
}

// writeSweepScale is the section of the sweep at scale.
func writeSweepScale(w writer, r *result) {
	w("## 9. A sweep over 10,000 Running workflows\n\n")
	sw := r.Sweep
	if sw == nil {
		w("%s.\n\n", notRun)
		return
	}
	w("%d Running workflows are written straight to the API server (labelled with a controller instance ID the stack's Argo\n", sw.Workflows)
	w("controller does not own, so they stay as written): %d of them with %d Pod nodes (all Succeeded but the last, Running),\n", sw.Big, sw.BigNodes)
	w("the rest with one Running Pod node. Each running node has its pod, but for %d workflows spread over the list, whose pod is\n", sw.Stuck)
	w("gone and task result incomplete. The function binary (`ADH_NAMESPACES=%s ADH_INSTANCE_ID=%s`, `ADH_SWEEP_BUDGET=%s`,\n", nsSweep, sweepInstance, sw.Budget)
	w("page size %s) gets one PingSource tick after another until all %d task results are complete; its RSS is\n", sw.PageSize, sw.Stuck)
	w("sampled every 100 ms. Set-up took %s; RSS idle before the first tick %s.\n\n", secs(sw.SetupTook), mib(sw.RSSIdle.RSS))
	w("| tick | answer | took | the sweep's own duration | workflows swept | stuck found | reached the end | errors | stuck repaired so far | RSS max |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for i, tk := range sw.Ticks {
		w("| %d | %d | %s | %s | %d | %d | %v | %d | %d of %d | %s |\n", i+1, tk.Status, secs(tk.Took), secs(tk.Duration), tk.Workflows, tk.Stuck, tk.Complete, tk.Errors, tk.Repaired, sw.Stuck, mib(tk.RSSMax))
	}
	w("\n")
}
