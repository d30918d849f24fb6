package apifake

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"

	"function/internal/argoworkflow"
)

// The one identity of the unit tests' objects, as the Argo controller and the wait container make
// them: the captured events in eventing/testdata name the same workflow, node and pod.
const (
	Namespace    = "argo"
	WorkflowName = "nightly-etl-7k2xq"
	WorkflowUID  = "0d7f6c1e-5b0e-4f55-9c55-0b9c1a3e8f21"
	NodeID       = "nightly-etl-7k2xq-1770056762"
	PodName      = "nightly-etl-7k2xq-extract-1770056762"
	HostName     = "ip-10-0-1-23.eu-west-1.compute.internal"
)

// T0 is when the Workflow started.
var T0 = time.Date(2026, 11, 26, 9, 14, 2, 0, time.UTC)

// LastSeenVersion is the resourceVersion an Argo 4 controller last updated the Workflow from.
const LastSeenVersion = "98"

// WorkflowOption changes a Workflow from its default.
type WorkflowOption func(*wfv1.Workflow)

// Workflow returns a Running Workflow whose Pod node NodeID is Running under a Retry node,
// with the task result gate waiting on it, as a 3.5.x controller writes it (plus the
// last-seen-version annotation of a 4.x controller).
func Workflow(opts ...WorkflowOption) *wfv1.Workflow {
	retryID := argoworkflow.NodeID(WorkflowName, WorkflowName+"[0].extract")
	wf := &wfv1.Workflow{
		TypeMeta: metav1.TypeMeta{APIVersion: "argoproj.io/v1alpha1", Kind: "Workflow"},
		ObjectMeta: metav1.ObjectMeta{Name: WorkflowName, Namespace: Namespace, UID: WorkflowUID, ResourceVersion: "100", Labels: map[string]string{argoworkflow.LabelPhase: "Running"},
			Annotations: map[string]string{argoworkflow.AnnotationLastSeenVersion: LastSeenVersion, argoworkflow.AnnotationPodNameFormat: "v2"}},
		Status: wfv1.WorkflowStatus{
			Phase:     wfv1.WorkflowRunning,
			StartedAt: metav1.NewTime(T0),
			Nodes: wfv1.Nodes{
				WorkflowName: {ID: WorkflowName, Name: WorkflowName, Type: wfv1.NodeTypeSteps, Phase: wfv1.NodeRunning, Children: []string{retryID}, StartedAt: metav1.NewTime(T0)},
				retryID:      {ID: retryID, Name: WorkflowName + "[0].extract", Type: wfv1.NodeTypeRetry, Phase: wfv1.NodeRunning, Children: []string{NodeID}, StartedAt: metav1.NewTime(T0)},
				NodeID:       {ID: NodeID, Name: WorkflowName + "[0].extract(0)", Type: wfv1.NodeTypePod, Phase: wfv1.NodeRunning, TemplateName: "extract", HostNodeName: HostName, StartedAt: metav1.NewTime(T0)},
			},
			TaskResultsCompletionStatus: map[string]bool{NodeID: false},
		},
	}
	for _, o := range opts {
		o(wf)
	}
	return wf
}

// WithPhase sets the Workflow's phase.
func WithPhase(p wfv1.WorkflowPhase) WorkflowOption {
	return func(wf *wfv1.Workflow) { wf.Status.Phase = p }
}

// WithNodePhase sets the Pod node's phase.
func WithNodePhase(p wfv1.NodePhase) WorkflowOption {
	return func(wf *wfv1.Workflow) {
		n := wf.Status.Nodes[NodeID]
		n.Phase = p
		wf.Status.Nodes[NodeID] = n
	}
}

// WithUID sets the Workflow's UID.
func WithUID(uid types.UID) WorkflowOption { return func(wf *wfv1.Workflow) { wf.UID = uid } }

// WithLabel sets a label on the Workflow.
func WithLabel(k, v string) WorkflowOption { return func(wf *wfv1.Workflow) { wf.Labels[k] = v } }

// WithDeletion is a Workflow being deleted, held by a finalizer.
func WithDeletion() WorkflowOption {
	return func(wf *wfv1.Workflow) {
		now := metav1.NewTime(T0)
		wf.DeletionTimestamp = &now
		wf.Finalizers = []string{"workflows.argoproj.io/artifact-gc"}
	}
}

// WithCompressedNodes stores the nodes as a controller does past ~1 MiB.
func WithCompressedNodes(wf *wfv1.Workflow) {
	s, err := argoworkflow.Compress(wf.Status.Nodes)
	if err != nil {
		panic(err)
	}
	wf.Status.CompressedNodes, wf.Status.Nodes = s, nil
}

// WithOffloadedNodes stores the nodes in Argo's database.
func WithOffloadedNodes(wf *wfv1.Workflow) {
	wf.Status.OffloadNodeStatusVersion, wf.Status.Nodes = "fnv:784213453", nil
}

// With37Synced models a v3.7.1+ Workflow: no completion map, taskResultSynced on the node.
func With37Synced(wf *wfv1.Workflow) {
	wf.Status.TaskResultsCompletionStatus = nil
	n := wf.Status.Nodes[NodeID]
	f := false
	n.TaskResultSynced = &f
	wf.Status.Nodes[NodeID] = n
}

// TaskResult is the task result of the Workflow's pod, its completed label set to label ("": none).
func TaskResult(label string) *wfv1.WorkflowTaskResult { return TaskResultOf(WorkflowUID, label) }

// TaskResultOf is the task result the executor of Workflow uid's Pod made.
func TaskResultOf(uid types.UID, label string) *wfv1.WorkflowTaskResult {
	labels := map[string]string{argoworkflow.LabelWorkflow: WorkflowName}
	if label != "" {
		labels[argoworkflow.LabelReportOutputsCompleted] = label
	}
	return &wfv1.WorkflowTaskResult{
		TypeMeta: metav1.TypeMeta{APIVersion: "argoproj.io/v1alpha1", Kind: "WorkflowTaskResult"},
		ObjectMeta: metav1.ObjectMeta{Name: NodeID, Namespace: Namespace, ResourceVersion: "50", Labels: labels,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "argoproj.io/v1alpha1", Kind: "Workflow", Name: WorkflowName, UID: uid}}},
	}
}

// PodOption changes a Pod from its default.
type PodOption func(*corev1.Pod)

// Pod returns the running Pod of node NodeID on HostName, with its main and wait containers.
func Pod(opts ...PodOption) *corev1.Pod {
	p := &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: PodName, Namespace: Namespace, UID: "pod-uid-1", ResourceVersion: "70",
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "argoproj.io/v1alpha1", Kind: "Workflow", Name: WorkflowName, UID: WorkflowUID, Controller: ptr(true)}},
			Labels:          map[string]string{argoworkflow.LabelWorkflow: WorkflowName, argoworkflow.LabelCompleted: "false"},
			Annotations:     map[string]string{argoworkflow.AnnotationNodeID: NodeID, argoworkflow.AnnotationNodeName: WorkflowName + "[0].extract(0)"}},
		Spec: corev1.PodSpec{NodeName: HostName, Containers: []corev1.Container{{Name: "main"}, {Name: "wait"}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{
			{Name: "main", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}},
			{Name: "wait", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}},
		}},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

// Terminating is a graceful deletion in progress.
func Terminating(p *corev1.Pod) {
	ts := metav1.NewTime(T0.Add(6 * time.Minute))
	p.DeletionTimestamp = &ts
}

// ForceDeleted is a deletion with grace period 0 (PodGC, Karpenter at the node's deadline).
func ForceDeleted(p *corev1.Pod) {
	Terminating(p)
	zero := int64(0)
	p.DeletionGracePeriodSeconds = &zero
}

// WithStatusFinalizer is Argo's pod-status finalizer, alone.
func WithStatusFinalizer(p *corev1.Pod) { p.Finalizers = []string{argoworkflow.FinalizerStatus} }

// WithFinalizer is another owner's finalizer beside Argo's.
func WithFinalizer(p *corev1.Pod) {
	p.Finalizers = []string{"example.com/keep", argoworkflow.FinalizerStatus}
}

// Failed is a pod whose containers ended with 143.
func Failed(p *corev1.Pod) {
	p.Status.Phase = corev1.PodFailed
	for i := range p.Status.ContainerStatuses {
		p.Status.ContainerStatuses[i].State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 143}}
	}
}

// MarkedFailedByPodGC is what PodGC does to a Pod of a vanished Node before deleting it: phase
// Failed, DisruptionTarget DeletionByPodGC, containers left as they were (running).
func MarkedFailedByPodGC(p *corev1.Pod) {
	p.Status.Phase = corev1.PodFailed
	p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue, Reason: "DeletionByPodGC"})
}

// Evicted is a pod the Eviction API took (DisruptionTarget condition).
func Evicted(p *corev1.Pod) {
	p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue, Reason: "EvictionByEvictionAPI", Message: "Eviction API: evicting"})
}

// EvictedBeforeStart is a Pod the kubelet Evicted while its main container had not started (an
// image still pulling): the kind Argo 4's failedPodRestart deletes and creates again.
func EvictedBeforeStart(p *corev1.Pod) {
	p.Status.Phase, p.Status.Reason, p.Status.Message = corev1.PodFailed, "Evicted", "The node was low on resource: memory."
	p.Status.ContainerStatuses = []corev1.ContainerStatus{
		{Name: "main", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, Reason: "ContainerStatusUnknown"}}},
		{Name: "wait", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, Reason: "Error", StartedAt: metav1.NewTime(T0)}}},
	}
}

// Reincarnated is a later pod of the same name (another UID).
func Reincarnated(p *corev1.Pod) { p.UID = "pod-uid-2" }

// HostNode is the Node the Pod runs on.
func HostNode() *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: HostName}}
}

// WithNodeMessage sets the Pod node's message.
func WithNodeMessage(m string) WorkflowOption {
	return func(wf *wfv1.Workflow) {
		n := wf.Status.Nodes[NodeID]
		n.Message = m
		wf.Status.Nodes[NodeID] = n
	}
}

func ptr[T any](v T) *T { return &v }
