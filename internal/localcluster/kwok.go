package localcluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

const (
	// KwokNodeAnnotation marks the Nodes kwok manages (value "fake").
	KwokNodeAnnotation = "kwok.x-k8s.io/node"

	// CompleteAnnotation on a Running pod of a kwok Node makes kwok finish
	// it: value "true" -> every container terminated with exit code 0,
	// phase Succeeded; value "fail" -> exit code 1, phase Failed; value "lost" -> what a
	// kubelet reports after its node rebooted under the pod: every container terminated with
	// ContainerStatusUnknown, exit code 137, phase Failed.
	CompleteAnnotation = "e2e.argo-disruption-handler/complete"

	// TerminateDelayAnnotation (a Go duration such as "5s") delays the
	// "kubelet killed the containers" step after a pod got a
	// deletionTimestamp; default immediately.
	TerminateDelayAnnotation = "e2e.argo-disruption-handler/terminate-delay"
)

// NodeName returns the name of the i-th kwok Node ("kwok-node-<i>").
func NodeName(i int) string { return fmt.Sprintf("kwok-node-%d", i) }

// KwokPodStages is the kwok Stage configuration (kwok.x-k8s.io/v1alpha1)
// given to kwok with -c. It replaces kwok's default pod stages (which never
// complete a pod and strip all finalizers on deletion) with kubelet-like
// behaviour:
//
//   - pod-ready:     new pod (no podIP, not deleting) -> Running, containers
//     running, init containers terminated 0, podIP/hostIP set.
//   - pod-complete:  Running + annotation CompleteAnnotation=true -> all
//     containers terminated exit 0 (Completed), phase Succeeded.
//   - pod-fail:      Running + annotation CompleteAnnotation=fail -> all
//     containers terminated exit 1 (Error), phase Failed.
//   - pod-lost:      Running + annotation CompleteAnnotation=lost -> all
//     containers terminated exit 137 (ContainerStatusUnknown), phase Failed.
//   - pod-terminate: deletionTimestamp set while Pending/Running -> containers
//     terminated exit 143 (Error), phase Failed (what a kubelet reports
//     after SIGTERM), optionally after TerminateDelayAnnotation.
//   - pod-remove:    deletionTimestamp set while Failed/Succeeded -> delete
//     with grace period 0, finalizers are NOT touched (a pod holding a
//     finalizer stays until its owner removes it).
//
// Node stages are kwok's defaults (node initialise + lease heartbeat).
var KwokPodStages = strings.Join([]string{
	podStage("pod-ready", `    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'
    - key: '.status.podIP'
      operator: 'DoesNotExist'
`, podReadyNext),
	podStage("pod-complete", runningWith(CompleteAnnotation, "true"), podFinished("PodCompleted", 0, "Completed", "Succeeded")),
	podStage("pod-fail", runningWith(CompleteAnnotation, "fail"), podFinished("PodFailed", 1, "Error", "Failed")),
	podStage("pod-lost", runningWith(CompleteAnnotation, "lost"), podFinished("PodFailed", 137, "ContainerStatusUnknown", "Failed")),
	podStage("pod-terminate", deletingWhile("Pending", "Running"), `  delay:
    durationMilliseconds: 0
    durationFrom:
      expressionFrom: '.metadata.annotations["`+TerminateDelayAnnotation+`"]'
`+podFinished("PodFailed", 143, "Error", "Failed")),
	podStage("pod-remove", deletingWhile("Failed", "Succeeded"), "  next:\n    delete: true\n"),
}, "---\n")

// podStage is a kwok Stage for the pods that match every expression (YAML list items), its
// spec going on with rest (the next state, and a delay).
func podStage(name, matchExpressions, rest string) string {
	return `apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: ` + name + `
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
` + matchExpressions + rest
}

// podReadyNext is a new pod's next state: Running, every container running.
const podReadyNext = `  next:
    statusTemplate: |
      {{ $now := Now }}
      conditions:
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: Initialized
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: Ready
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: ContainersReady
      {{ range .spec.readinessGates }}
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: {{ .conditionType | Quote }}
      {{ end }}
      containerStatuses:
      {{ range .spec.containers }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: true
        restartCount: 0
        started: true
        state:
          running:
            startedAt: {{ $now | Quote }}
      {{ end }}
      initContainerStatuses:
      {{ range .spec.initContainers }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: true
        restartCount: 0
        {{ if eq .restartPolicy "Always" }}
        started: true
        state:
          running:
            startedAt: {{ $now | Quote }}
        {{ else }}
        state:
          terminated:
            exitCode: 0
            finishedAt: {{ $now | Quote }}
            reason: Completed
            startedAt: {{ $now | Quote }}
        {{ end }}
      {{ end }}
      hostIP: {{ NodeIPWith .spec.nodeName | Quote }}
      podIP: {{ PodIPWith .spec.nodeName ( or .spec.hostNetwork false ) ( or .metadata.uid "" ) ( or .metadata.name "" ) ( or .metadata.namespace "" ) | Quote }}
      phase: Running
      startTime: {{ $now | Quote }}
`

// podFinished is the next state of a pod whose every container ended with exitCode: what a
// kubelet reports once the containers exited or were killed.
func podFinished(readyReason string, exitCode int, containerReason, phase string) string {
	return fmt.Sprintf(`  next:
    statusTemplate: |
      {{ $now := Now }}
      conditions:
      - lastTransitionTime: {{ $now | Quote }}
        status: "False"
        reason: %[1]s
        type: Ready
      - lastTransitionTime: {{ $now | Quote }}
        status: "False"
        reason: %[1]s
        type: ContainersReady
      containerStatuses:
      {{ range .spec.containers }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: false
        restartCount: 0
        started: false
        state:
          terminated:
            exitCode: %[2]d
            finishedAt: {{ $now | Quote }}
            reason: %[3]s
            startedAt: {{ $now | Quote }}
      {{ end }}
      phase: %[4]s
`, readyReason, exitCode, containerReason, phase)
}

// runningWith matches a Running pod, not deleting, whose annotation key has value.
func runningWith(key, value string) string {
	return `    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'
    - key: '.status.phase'
      operator: 'In'
      values:
      - 'Running'
    - key: '.metadata.annotations["` + key + `"]'
      operator: 'In'
      values:
      - '` + value + `'
`
}

// deletingWhile matches a pod with a deletionTimestamp in one of the phases.
func deletingWhile(phases ...string) string {
	s := `    - key: '.metadata.deletionTimestamp'
      operator: 'Exists'
    - key: '.status.phase'
      operator: 'In'
      values:
`
	for _, p := range phases {
		s += "      - '" + p + "'\n"
	}
	return s
}

// createNodes creates n Nodes kwok-node-0..n-1 with the kwok annotation and
// some capacity. Existing nodes are left alone.
func (c *Cluster) createNodes(ctx context.Context, n int) error {
	for i := 0; i < n; i++ {
		if err := c.CreateNode(ctx, NodeName(i)); err != nil {
			return err
		}
	}
	return nil
}

// CreateNode creates (or re-creates after a deletion) a kwok-managed Node.
func (c *Cluster) CreateNode(ctx context.Context, name string) error {
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("32"),
		corev1.ResourceMemory: resource.MustParse("256Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Annotations: map[string]string{KwokNodeAnnotation: "fake"},
			Labels: map[string]string{
				"kubernetes.io/hostname": name,
				"kubernetes.io/os":       "linux",
				"kubernetes.io/arch":     "amd64",
				"type":                   "kwok",
			},
		},
		Status: corev1.NodeStatus{Capacity: capacity, Allocatable: capacity},
	}
	_, err := c.kube.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

func (c *Cluster) startKwokLocked() error {
	if p := c.procs["kwok"]; p != nil && !p.exited() {
		return nil
	}
	stages := filepath.Join(c.dir, "kwok-stages.yaml")
	if err := os.WriteFile(stages, []byte(KwokPodStages), 0o644); err != nil {
		return err
	}
	args := []string{
		"--kubeconfig=" + c.kubeconfig,
		"-c", stages,
		"--manage-all-nodes=false",
		"--manage-nodes-with-annotation-selector=" + KwokNodeAnnotation + "=fake",
		"--node-ip=10.244.0.1",
		"--cidr=10.244.0.0/16",
		"--server-address=",
		"--node-lease-duration-seconds=40",
	}
	p, err := startProc(c.logDir, "kwok", c.bins.kwok, args, []string{"HOME=" + c.dir}, 5*time.Second)
	if err != nil {
		return err
	}
	c.addProc(p)
	return nil
}

// StartKwok (re)starts the fake kubelet. Start already starts it.
func (c *Cluster) StartKwok() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return fmt.Errorf("cluster stopped")
	}
	return c.startKwokLocked()
}

// StopKwok stops the fake kubelet: pods on kwok Nodes keep their last status,
// deletions are no longer acted on, leases are no longer renewed (the node
// lifecycle controller marks the Nodes NotReady after its grace period).
func (c *Cluster) StopKwok() {
	c.stopProc("kwok")
}

// CompletePod annotates a pod so that kwok finishes it: succeed=true ->
// Succeeded with exit code 0, false -> Failed with exit code 1.
func (c *Cluster) CompletePod(ctx context.Context, namespace, name string, succeed bool) error {
	v := "true"
	if !succeed {
		v = "fail"
	}
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, CompleteAnnotation, v)
	_, err := c.kube.CoreV1().Pods(namespace).Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	return err
}
