//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"

	"function/config"
	"function/eventing"
	"function/handlers"
	"function/internal/argoworkflow"
	"function/internal/localcluster"
	"function/internal/lookup"
	"function/internal/repair"
	"function/internal/sweep"
	"function/internal/wiring"
)

const (
	// fnNamespace and fnServiceAccount are the function's identity in the chart (and func.yaml).
	fnNamespace      = "argo-disruption-handler"
	fnServiceAccount = "argo-disruption-handler"
	// rbacNS runs the test's workflows.
	rbacNS = "rbac-e2e"
)

// rbacEnv is the test's two identities: the admin that sets the scene and checks the outcome,
// and the function's ServiceAccount (impersonated) that runs the project's code.
type rbacEnv struct {
	c     *localcluster.Cluster
	admin *wiring.Clients
	fn    *wiring.Clients
	r     *repair.Repairer
	now   time.Time
}

// TestRBACRepairSteps applies the chart's Namespace, ServiceAccount, ClusterRole and
// ClusterRoleBinding for real on the local API server (RBAC authorization on), then, with clients
// impersonating system:serviceaccount:argo-disruption-handler:argo-disruption-handler, runs every
// repair step and lookup with the project's code (repair.Repairer, lookup.Finder, the whole
// handler for a Node delete event) and checks each outcome as admin. Then every write outside the
// role is refused with 403 Forbidden. The Argo controller does not run: the workflows, task
// results and pods are created as admin in the states the steps act on.
func TestRBACRepairSteps(t *testing.T) {
	ctx := context.Background()
	c, err := localcluster.Start(ctx, localcluster.Options{NoArgo: true, NoControllerManager: true, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	start := time.Now()
	admin, err := wiring.NewClients(c.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}

	// The function's identity, from the chart, for real.
	createFromChart(ctx, t, c, admin.Dynamic, chartObject{"ServiceAccount", fnServiceAccount},
		chartObject{"ClusterRole", fnServiceAccount}, chartObject{"ClusterRoleBinding", fnServiceAccount},
		chartObject{"Role", sweep.LeaseName}, chartObject{"RoleBinding", sweep.LeaseName})
	// Karpenter's own NodeClaim CRD: the instance lookup reads the columns it prints.
	if err := c.InstallNodeClaimCRD(ctx); err != nil {
		t.Fatal(err)
	}
	mapperFor(ctx, t, c, []*unstructured.Unstructured{{Object: map[string]any{"apiVersion": "karpenter.sh/v1", "kind": "NodeClaim"}}})
	for _, o := range []*corev1.Namespace{{ObjectMeta: metav1.ObjectMeta{Name: rbacNS}}} {
		if _, err := admin.Kube.CoreV1().Namespaces().Create(ctx, o, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// No kube-controller-manager (so no PodGC deleting the test's pods on gone Nodes): create the
	// namespace's default ServiceAccount that pod admission requires.
	if _, err := admin.Kube.CoreV1().ServiceAccounts(rbacNS).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}

	cfg := c.RESTConfig()
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + fnNamespace + ":" + fnServiceAccount}
	fn, err := wiring.NewClients(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// The RBAC authorizer sees the new binding through its informers, within a moment.
	if err := waitFor(ctx, 15*time.Second, func() bool {
		_, err := fn.Argo.ArgoprojV1alpha1().Workflows("").List(ctx, metav1.ListOptions{Limit: 1})
		return err == nil
	}); err != nil {
		t.Fatalf("the ClusterRoleBinding never took effect for %s", cfg.Impersonate.UserName)
	}
	e := &rbacEnv{c: c, admin: admin, fn: fn, now: time.Now()}
	e.r = repair.New(fn.Kube, fn.Argo, repair.Options{Policy: repair.Policy{Scope: config.Scope{Excluded: []string{"kube-system"}}, NodeErrorGrace: time.Second}, Host: "rbac-e2e"})
	t.Logf("identity applied and in force after %.1f s", time.Since(start).Seconds())

	allowed := []struct {
		name  string
		verbs string // what the role grants for it
		run   func(t *testing.T)
	}{
		{"ladder step 1: complete the task result, record Event and annotation",
			"get workflows, pods, workflowtaskresults; patch workflowtaskresults, workflows; create events", e.step1},
		{"ladder step 2: create the missing task result",
			"create workflowtaskresults", e.step2},
		{"ladder step 3: release the status finalizer of a pod on a gone Node",
			"get nodes; patch pods", e.step3},
		{"ladder step 4: mark the Pod node Error past the grace",
			"patch workflows (status.nodes)", e.step4},
		{"warning on the pod and its Workflow (Karpenter SpotInterrupted)",
			"patch pods, workflows; create events", e.warning},
		{"workflow pods on a Node (field selector spec.nodeName)",
			"list pods", e.podsOnNode},
		{"EC2 instance -> Node through Nodes and NodeClaims; NodeClaim -> Node",
			"list nodes, nodeclaims; get nodeclaims", e.instances},
		{"a gone pod known only by name: its incomplete task result",
			"list workflowtaskresults", e.locate},
		{"sweep: Running workflows and task results of every namespace, paginated",
			"list workflows, workflowtaskresults", e.sweepLists},
		{"force-delete the orphaned pod of a terminated machine, then step 1",
			"get nodes; delete pods; patch workflowtaskresults", e.forceDelete},
		{"the whole function (wiring.FromClients): a Node delete event",
			"list pods; get workflows, pods, nodes, workflowtaskresults; patch pods; create events; patch workflows", e.nodeDeleteEvent},
		{"the whole handler: a PingSource tick runs the sweep under its Lease",
			"create, get, update leases (function namespace); list workflows, pods", e.sweepPing},
	}
	for _, a := range allowed {
		t.Run("allowed/"+a.name, func(t *testing.T) {
			t0 := time.Now()
			a.run(t)
			t.Logf("%s: done in %.2f s", a.verbs, time.Since(t0).Seconds())
		})
	}

	// Writes (and a read) outside the role: refused by the API server.
	wf := e.workflow(t, "wf-forbidden", nil, nil)
	trName := e.taskResult(t, wf, argoworkflow.NodeID(wf.Name, wf.Name+".x"), "false")
	pod := e.pod(t, wf, "forbidden-pod", localcluster.NodeName(0), nil)
	forbidden := []struct {
		name string
		call func() error
	}{
		{"delete a Workflow", func() error {
			return fn.Argo.ArgoprojV1alpha1().Workflows(rbacNS).Delete(ctx, wf.Name, metav1.DeleteOptions{})
		}},
		{"update (PUT) a Workflow", func() error {
			cur, err := admin.Argo.ArgoprojV1alpha1().Workflows(rbacNS).Get(ctx, wf.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			_, err = fn.Argo.ArgoprojV1alpha1().Workflows(rbacNS).Update(ctx, cur, metav1.UpdateOptions{})
			return err
		}},
		{"create a Workflow", func() error {
			_, err := fn.Argo.ArgoprojV1alpha1().Workflows(rbacNS).Create(ctx, &wfv1.Workflow{ObjectMeta: metav1.ObjectMeta{Name: "wf-new"}, Spec: workflowSpec()}, metav1.CreateOptions{})
			return err
		}},
		{"delete a WorkflowTaskResult", func() error {
			return fn.Argo.ArgoprojV1alpha1().WorkflowTaskResults(rbacNS).Delete(ctx, trName, metav1.DeleteOptions{})
		}},
		{"update (PUT) a WorkflowTaskResult", func() error {
			cur, err := admin.Argo.ArgoprojV1alpha1().WorkflowTaskResults(rbacNS).Get(ctx, trName, metav1.GetOptions{})
			if err != nil {
				return err
			}
			_, err = fn.Argo.ArgoprojV1alpha1().WorkflowTaskResults(rbacNS).Update(ctx, cur, metav1.UpdateOptions{})
			return err
		}},
		{"patch a Node", func() error {
			_, err := fn.Kube.CoreV1().Nodes().Patch(ctx, localcluster.NodeName(0), types.MergePatchType, []byte(`{"metadata":{"labels":{"adh":"x"}}}`), metav1.PatchOptions{})
			return err
		}},
		{"delete a Node", func() error {
			return fn.Kube.CoreV1().Nodes().Delete(ctx, localcluster.NodeName(0), metav1.DeleteOptions{})
		}},
		{"create a Pod", func() error {
			_, err := fn.Kube.CoreV1().Pods(rbacNS).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "by-fn"},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "main", Image: "busybox"}}}}, metav1.CreateOptions{})
			return err
		}},
		{"update (PUT) a Pod", func() error {
			cur, err := admin.Kube.CoreV1().Pods(rbacNS).Get(ctx, pod.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			_, err = fn.Kube.CoreV1().Pods(rbacNS).Update(ctx, cur, metav1.UpdateOptions{})
			return err
		}},
		{"evict a Pod (pods/eviction)", func() error {
			return fn.Kube.PolicyV1().Evictions(rbacNS).Evict(ctx, &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: rbacNS}})
		}},
		{"watch Pods", func() error {
			w, err := fn.Kube.CoreV1().Pods(rbacNS).Watch(ctx, metav1.ListOptions{})
			if err == nil {
				w.Stop()
			}
			return err
		}},
		{"read a Secret", func() error {
			_, err := fn.Kube.CoreV1().Secrets(rbacNS).Get(ctx, "any", metav1.GetOptions{})
			return err
		}},
		{"list Secrets", func() error {
			_, err := fn.Kube.CoreV1().Secrets("").List(ctx, metav1.ListOptions{})
			return err
		}},
		{"patch an Event", func() error {
			_, err := fn.Kube.CoreV1().Events(rbacNS).Patch(ctx, "any", types.MergePatchType, []byte(`{}`), metav1.PatchOptions{})
			return err
		}},
		{"patch a NodeClaim", func() error {
			_, err := fn.Dynamic.Resource(lookup.NodeClaimGVR).Patch(ctx, "claim-b", types.MergePatchType, []byte(`{"metadata":{"labels":{"adh":"x"}}}`), metav1.PatchOptions{})
			return err
		}},
	}
	for _, f := range forbidden {
		t.Run("forbidden/"+f.name, func(t *testing.T) {
			err := f.call()
			if !apierrors.IsForbidden(err) {
				t.Errorf("want 403 Forbidden, got %v", err)
				return
			}
			t.Logf("refused: %v", err)
		})
	}
	if _, err := admin.Argo.ArgoprojV1alpha1().Workflows(rbacNS).Get(ctx, wf.Name, metav1.GetOptions{}); err != nil {
		t.Errorf("workflow %s gone after the forbidden delete: %v", wf.Name, err)
	}
	t.Logf("whole test after the stack was up: %.1f s", time.Since(start).Seconds())
}

func workflowSpec() wfv1.WorkflowSpec {
	return wfv1.WorkflowSpec{Entrypoint: "main", Templates: []wfv1.Template{{Name: "main", Container: &corev1.Container{Image: "busybox"}}}}
}

// podNode is a Running Pod node named <wf>.<step>, started a minute ago.
func (e *rbacEnv) podNode(wf, step string) wfv1.NodeStatus {
	name := wf + "." + step
	return wfv1.NodeStatus{ID: argoworkflow.NodeID(wf, name), Name: name, DisplayName: step, Type: wfv1.NodeTypePod,
		TemplateName: "main", Phase: wfv1.NodeRunning, StartedAt: metav1.NewTime(e.now.Add(-time.Minute))}
}

// workflow creates, as admin, a Running workflow with these nodes and task-result gate (the
// Workflow CRD has no status subresource: the status is stored as sent).
func (e *rbacEnv) workflow(t *testing.T, name string, nodes []wfv1.NodeStatus, gate map[string]bool) *wfv1.Workflow {
	t.Helper()
	wf := &wfv1.Workflow{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: rbacNS, Labels: map[string]string{argoworkflow.LabelPhase: "Running"}},
		Spec:       workflowSpec(),
		Status:     wfv1.WorkflowStatus{Phase: wfv1.WorkflowRunning, StartedAt: metav1.NewTime(e.now.Add(-2 * time.Minute)), TaskResultsCompletionStatus: gate},
	}
	if len(nodes) > 0 {
		wf.Status.Nodes = wfv1.Nodes{}
		for _, n := range nodes {
			wf.Status.Nodes[n.ID] = n
		}
	}
	out, err := e.admin.Argo.ArgoprojV1alpha1().Workflows(rbacNS).Create(context.Background(), wf, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating workflow %s: %v", name, err)
	}
	return out
}

// taskResult creates, as admin, the node's task result as the wait container does.
func (e *rbacEnv) taskResult(t *testing.T, wf *wfv1.Workflow, nodeID, completed string) string {
	t.Helper()
	if err := e.c.CreateTaskResult(context.Background(), rbacNS, wf.Name, string(wf.UID), nodeID, completed == "true"); err != nil {
		t.Fatalf("creating task result %s: %v", nodeID, err)
	}
	return nodeID
}

// pod creates, as admin, a workflow pod bound to node (which may not exist).
func (e *rbacEnv) pod(t *testing.T, wf *wfv1.Workflow, name, node string, n *wfv1.NodeStatus, finalizers ...string) *corev1.Pod {
	t.Helper()
	ann := map[string]string{}
	if n != nil {
		ann[argoworkflow.AnnotationNodeID] = n.ID
		ann[argoworkflow.AnnotationNodeName] = n.Name
	}
	no := false
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: rbacNS, Labels: map[string]string{argoworkflow.LabelWorkflow: wf.Name},
			Annotations: ann, Finalizers: finalizers,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "argoproj.io/v1alpha1", Kind: "Workflow", Name: wf.Name, UID: wf.UID}}},
		Spec: corev1.PodSpec{NodeName: node, AutomountServiceAccountToken: &no,
			Containers: []corev1.Container{{Name: "main", Image: "busybox"}, {Name: argoworkflow.WaitContainer, Image: "argoexec"}}},
	}
	out, err := e.admin.Kube.CoreV1().Pods(rbacNS).Create(context.Background(), p, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating pod %s: %v", name, err)
	}
	return out
}

// podName is the (v2) pod name of n.
func podName(wf *wfv1.Workflow, n wfv1.NodeStatus) string {
	return argoworkflow.PodName(wf.Name, n.Name, n.TemplateName, n.ID, "")
}

// repair runs the ladder for the target as the function, and checks the actions done.
func (e *rbacEnv) repair(t *testing.T, tg repair.Target, want ...repair.Action) repair.Result {
	t.Helper()
	res, err := e.r.Repair(context.Background(), tg)
	if err != nil {
		t.Fatalf("repair as %s: %v", fnServiceAccount, err)
	}
	for _, a := range want {
		if !slices.Contains(res.Done, a) {
			t.Errorf("actions done %v (plan %+v), want %s among them", res.Done, res.Plan, a)
		}
	}
	return res
}

func (e *rbacEnv) target(wf *wfv1.Workflow, n wfv1.NodeStatus) repair.Target {
	return repair.Target{Namespace: rbacNS, Workflow: wf.Name, NodeID: n.ID, PodName: podName(wf, n),
		DeletedAt: e.now.Add(-30 * time.Second), Reason: "EvictionByEvictionAPI", Trigger: "rbac e2e"}
}

// taskResultComplete checks, as admin, the task result's label and our marker.
func (e *rbacEnv) taskResultComplete(t *testing.T, nodeID string) {
	t.Helper()
	tr, err := e.admin.Argo.ArgoprojV1alpha1().WorkflowTaskResults(rbacNS).Get(context.Background(), nodeID, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("task result %s: %v", nodeID, err)
	}
	if tr.Labels[argoworkflow.LabelReportOutputsCompleted] != "true" || tr.Annotations[argoworkflow.AnnotationRepaired] == "" {
		t.Errorf("task result %s: labels %v annotations %v", nodeID, tr.Labels, tr.Annotations)
	}
}

// recorded checks, as admin, the disruption annotation on the workflow and the Event on it.
func (e *rbacEnv) recorded(t *testing.T, wfName, nodeID string) {
	t.Helper()
	ctx := context.Background()
	wf, err := e.admin.Argo.ArgoprojV1alpha1().Workflows(rbacNS).Get(ctx, wfName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := repair.Recorded(wf)[nodeID]; !ok {
		t.Errorf("no record of node %s on workflow %s: %v", nodeID, wfName, wf.Annotations)
	}
	evs, err := e.admin.Kube.CoreV1().Events(rbacNS).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + wfName})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(evs.Items, func(ev corev1.Event) bool { return ev.Reason == repair.EventReason }) {
		t.Errorf("no %s Event on workflow %s", repair.EventReason, wfName)
	}
}

func (e *rbacEnv) step1(t *testing.T) {
	n := e.podNode("wf-step1", "a")
	wf := e.workflow(t, "wf-step1", []wfv1.NodeStatus{n}, map[string]bool{n.ID: false})
	e.taskResult(t, wf, n.ID, "false")
	e.repair(t, e.target(wf, n), repair.CompleteTaskResult)
	e.taskResultComplete(t, n.ID)
	e.recorded(t, wf.Name, n.ID)
}

func (e *rbacEnv) step2(t *testing.T) {
	n := e.podNode("wf-step2", "a")
	// The controller marked the node when its pod vanished; the wait container never made the
	// task result that the gate waits on.
	n.Phase, n.Message = wfv1.NodeError, "pod deleted"
	wf := e.workflow(t, "wf-step2", []wfv1.NodeStatus{n}, map[string]bool{n.ID: false})
	e.repair(t, e.target(wf, n), repair.CreateTaskResult)
	e.taskResultComplete(t, n.ID)
	e.recorded(t, wf.Name, n.ID)
}

func (e *rbacEnv) step3(t *testing.T) {
	ctx := context.Background()
	n := e.podNode("wf-step3", "a")
	wf := e.workflow(t, "wf-step3", []wfv1.NodeStatus{n}, map[string]bool{n.ID: false})
	e.taskResult(t, wf, n.ID, "false")
	pod := e.pod(t, wf, podName(wf, n), "gone-node-3", &n, argoworkflow.FinalizerStatus)
	// Force-deleted (as PodGC does for a pod of a vanished Node): held by Argo's finalizer.
	grace := int64(0)
	if err := e.admin.Kube.CoreV1().Pods(rbacNS).Delete(ctx, pod.Name, metav1.DeleteOptions{GracePeriodSeconds: &grace}); err != nil {
		t.Fatal(err)
	}
	held, err := e.fn.Kube.CoreV1().Pods(rbacNS).Get(ctx, pod.Name, metav1.GetOptions{})
	if err != nil || held.DeletionTimestamp == nil {
		t.Fatalf("pod %s not held Terminating: %v", pod.Name, err)
	}
	tg, err := repair.TargetFromPod(held, e.now, "rbac e2e")
	if err != nil {
		t.Fatal(err)
	}
	e.repair(t, tg, repair.ReleaseStatusFinalizer, repair.CompleteTaskResult)
	if _, err := e.admin.Kube.CoreV1().Pods(rbacNS).Get(ctx, pod.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("pod %s still there after its finalizer was released: %v", pod.Name, err)
	}
	e.taskResultComplete(t, n.ID)
	e.recorded(t, wf.Name, n.ID)
}

func (e *rbacEnv) step4(t *testing.T) {
	n := e.podNode("wf-step4", "a")
	wf := e.workflow(t, "wf-step4", []wfv1.NodeStatus{n}, nil)
	e.repair(t, e.target(wf, n), repair.MarkNodeError)
	cur, err := e.admin.Argo.ArgoprojV1alpha1().Workflows(rbacNS).Get(context.Background(), wf.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got := cur.Status.Nodes[n.ID]
	if got.Phase != wfv1.NodeError || got.Message != repair.PodDeletedMessage || got.FinishedAt.IsZero() {
		t.Errorf("node %s: phase %s message %q finishedAt %v", n.ID, got.Phase, got.Message, got.FinishedAt)
	}
	if cur.Status.Phase != wfv1.WorkflowRunning {
		t.Errorf("workflow phase changed to %s", cur.Status.Phase)
	}
	e.recorded(t, wf.Name, n.ID)
}

func (e *rbacEnv) warning(t *testing.T) {
	ctx := context.Background()
	n := e.podNode("wf-warn", "a")
	wf := e.workflow(t, "wf-warn", []wfv1.NodeStatus{n}, nil)
	p := e.pod(t, wf, podName(wf, n), localcluster.NodeName(0), &n)
	p, err := e.fn.Kube.CoreV1().Pods(rbacNS).Get(ctx, p.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w := repair.Warning{Source: "karpenter", Reason: "SpotInterrupted", Message: "Spot interruption warning was triggered",
		Node: p.Spec.NodeName, Time: e.now.UTC().Truncate(time.Second)}
	if err := e.r.RecordWarning(ctx, p, w); err != nil {
		t.Fatalf("RecordWarning as %s: %v", fnServiceAccount, err)
	}
	got, err := e.admin.Kube.CoreV1().Pods(rbacNS).Get(ctx, p.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pw, ok := repair.PodWarning(got); !ok || pw.Reason != "SpotInterrupted" {
		t.Errorf("pod warning %v %v", pw, ok)
	}
	cur, err := e.admin.Argo.ArgoprojV1alpha1().Workflows(rbacNS).Get(ctx, wf.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := repair.Warnings(cur)[p.Name]; !ok {
		t.Errorf("no warning on workflow %s: %v", wf.Name, cur.Annotations)
	}
}

func (e *rbacEnv) podsOnNode(t *testing.T) {
	wf := e.workflow(t, "wf-onnode", nil, nil)
	p := e.pod(t, wf, "onnode-pod", "listed-node", nil)
	pods, err := lookup.Finder{Kube: e.fn.Kube, Dynamic: e.fn.Dynamic}.WorkflowPodsOn(context.Background(), "listed-node", nil)
	if err != nil {
		t.Fatalf("WorkflowPodsOn as %s: %v", fnServiceAccount, err)
	}
	if len(pods) != 1 || pods[0].Name != p.Name {
		t.Errorf("pods on listed-node: %d, want %s", len(pods), p.Name)
	}
}

func (e *rbacEnv) instances(t *testing.T) {
	ctx := context.Background()
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a"}, Spec: corev1.NodeSpec{ProviderID: "aws:///eu-west-1a/i-0aaaaaaaaaaaaaaaa"}}
	if _, err := e.admin.Kube.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := e.c.CreateNodeClaim(ctx, "claim-b", "aws:///eu-west-1b/i-0bbbbbbbbbbbbbbbb", "node-b"); err != nil {
		t.Fatal(err)
	}
	f := lookup.Finder{Kube: e.fn.Kube, Dynamic: e.fn.Dynamic, Tables: lookup.RESTTables{Client: e.fn.REST}}
	// NodeClaims are listed from the API server's watch cache (resourceVersion=0), which may not
	// hold an object created a moment ago: wait for it to, rather than race it.
	var nodes []string
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		got, err := f.NodesOfInstances(ctx, []string{"i-0aaaaaaaaaaaaaaaa", "i-0bbbbbbbbbbbbbbbb"})
		if err != nil {
			return false, fmt.Errorf("NodesOfInstances as %s: %w", fnServiceAccount, err)
		}
		slices.Sort(got)
		nodes = got
		return slices.Equal(got, []string{"node-a", "node-b"}), nil
	})
	if err != nil {
		t.Errorf("nodes of the instances: %v (%v)", nodes, err)
	}
	if got, err := f.NodeOfClaim(ctx, "claim-b"); err != nil || got != "node-b" {
		t.Errorf("NodeOfClaim as %s: %q %v", fnServiceAccount, got, err)
	}
}

func (e *rbacEnv) locate(t *testing.T) {
	n := e.podNode("wf-locate", "a")
	wf := e.workflow(t, "wf-locate", []wfv1.NodeStatus{n}, map[string]bool{n.ID: false})
	e.taskResult(t, wf, n.ID, "false")
	targets, err := e.r.TargetsOfGonePod(context.Background(), rbacNS, podName(wf, n), e.now, "rbac e2e")
	if err != nil {
		t.Fatalf("TargetsOfGonePod as %s: %v", fnServiceAccount, err)
	}
	if len(targets) != 1 || targets[0].NodeID != n.ID || targets[0].Workflow != wf.Name {
		t.Errorf("targets %+v, want node %s", targets, n.ID)
	}
}

func (e *rbacEnv) sweepLists(t *testing.T) {
	ctx := context.Background()
	opts := metav1.ListOptions{LabelSelector: argoworkflow.LabelPhase + "=Running", Limit: 2}
	n, pages := 0, 0
	for {
		l, err := e.fn.Argo.ArgoprojV1alpha1().Workflows("").List(ctx, opts)
		if err != nil {
			t.Fatalf("listing Running workflows as %s: %v", fnServiceAccount, err)
		}
		n, pages = n+len(l.Items), pages+1
		if opts.Continue = l.Continue; opts.Continue == "" {
			break
		}
	}
	if n < 2 || pages < 2 {
		t.Errorf("%d Running workflows in %d pages", n, pages)
	}
	if _, err := e.fn.Argo.ArgoprojV1alpha1().WorkflowTaskResults("").List(ctx, metav1.ListOptions{Limit: 100}); err != nil {
		t.Errorf("listing task results of every namespace as %s: %v", fnServiceAccount, err)
	}
}

func (e *rbacEnv) forceDelete(t *testing.T) {
	ctx := context.Background()
	n := e.podNode("wf-orphan", "a")
	wf := e.workflow(t, "wf-orphan", []wfv1.NodeStatus{n}, map[string]bool{n.ID: false})
	e.taskResult(t, wf, n.ID, "false")
	p := e.pod(t, wf, podName(wf, n), "terminated-node", &n)
	// The machine is known terminated (an EC2 state-change, a Karpenter NodeClaim delete): the
	// pod left on it is force-deleted (grace 0, UID precondition) and the task result completed.
	tg, err := repair.TargetFromPod(p, e.now, "rbac e2e")
	if err != nil {
		t.Fatal(err)
	}
	tg.Machine = eventing.MachineTerminated
	e.repair(t, tg, repair.DeleteOrphanedPod, repair.CompleteTaskResult)
	if _, err := e.admin.Kube.CoreV1().Pods(rbacNS).Get(ctx, p.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("pod %s still there: %v", p.Name, err)
	}
	e.taskResultComplete(t, n.ID)
	e.recorded(t, wf.Name, n.ID)
}

// nodeDeleteEvent sends a Resource-mode Node delete CloudEvent through the whole handler built by
// wiring.FromClients with the function's clients: it lists the Node's workflow pods and releases the
// status finalizer of the one left there.
func (e *rbacEnv) nodeDeleteEvent(t *testing.T) {
	ctx := context.Background()
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-c"}}
	node, err := e.admin.Kube.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n := e.podNode("wf-nodegone", "a")
	wf := e.workflow(t, "wf-nodegone", []wfv1.NodeStatus{n}, map[string]bool{n.ID: false})
	e.taskResult(t, wf, n.ID, "false")
	p := e.pod(t, wf, podName(wf, n), node.Name, &n, argoworkflow.FinalizerStatus)
	if err := e.admin.Kube.CoreV1().Nodes().Delete(ctx, node.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// PodGC's deletion of the orphaned pod: Argo's status finalizer now holds it Terminating, the
	// case the release is for (a pod not being deleted keeps its finalizer: docs/safety.md, rule 12).
	if err := e.admin.Kube.CoreV1().Pods(rbacNS).Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	node.Kind, node.APIVersion = "Node", "v1"
	data, err := json.Marshal(node)
	if err != nil {
		t.Fatal(err)
	}
	ev := jsonEvent(t, "rbac-e2e", e.c.RESTConfig().Host, "dev.knative.apiserver.resource.delete", data)
	ev.SetSubject("/apis/v1/namespaces//nodes/" + node.Name)
	ev.SetExtension("apiversion", "v1")
	ev.SetExtension("kind", "Node")
	ev.SetExtension("name", node.Name)
	if err := e.handler(t, nil).Handle(ctx, ev); err != nil {
		t.Fatalf("Handle as %s: %v", fnServiceAccount, err)
	}
	got, err := e.admin.Kube.CoreV1().Pods(rbacNS).Get(ctx, p.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		t.Fatal(err)
	case slices.Contains(got.Finalizers, argoworkflow.FinalizerStatus):
		t.Errorf("pod %s still holds %s", p.Name, argoworkflow.FinalizerStatus)
	}
	e.recorded(t, wf.Name, n.ID)
}

// handler is the whole handler (wiring.FromClients) over the function's clients, with only the
// settings the steps need (no follow-up waiting for a controller: none runs here); tune, when
// set, adds to them.
func (e *rbacEnv) handler(t *testing.T, tune func(*config.Config)) *handlers.Handler {
	cfg := &config.Config{ExcludedNamespaces: []string{"kube-system"}, NodeErrorGrace: time.Minute, ConflictRetries: 5,
		EventTimeout: 10 * time.Second, MaxBodyBytes: 4 << 20, KubeQPS: 50, KubeBurst: 100, LogLevel: "debug"}
	if tune != nil {
		tune(cfg)
	}
	return wiring.FromClients(cfg, e.fn, nil, zaptest.NewLogger(t).Sugar()).Handler
}

// sweepPing sends a PingSource CloudEvent through the whole handler: the sweep takes its Lease in
// the function's namespace (created on the first tick), scans, stores its cursor and releases it.
func (e *rbacEnv) sweepPing(t *testing.T) {
	ctx := context.Background()
	ev := jsonEvent(t, "ping-rbac", "/apis/v1/namespaces/"+fnNamespace+"/pingsources/sweep", "dev.knative.sources.ping", []byte(`{"sweep":true}`))
	h := e.handler(t, func(cfg *config.Config) {
		cfg.SweepBudget, cfg.SweepGrace, cfg.SweepPageSize, cfg.StateNamespace = 10*time.Second, time.Minute, 10, fnNamespace
	})
	for i := range 2 { // the first tick creates the Lease, the second updates it
		if err := h.Handle(ctx, ev); err != nil {
			t.Fatalf("ping %d as %s: %v", i+1, fnServiceAccount, err)
		}
	}
	l, err := e.admin.Kube.CoordinationV1().Leases(fnNamespace).Get(ctx, sweep.LeaseName, metav1.GetOptions{})
	if err != nil || l.Spec.HolderIdentity != nil {
		t.Fatalf("sweep Lease %+v (err %v), want created and released", l, err)
	}
}
