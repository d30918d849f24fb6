//go:build e2e

package localcluster

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/yaml"

	"function/internal/localcluster/cesink"
)

// Run: go test -tags e2e -run TestSmoke -v -timeout 10m ./internal/localcluster/
// ADH_ARGO_VERSION selects the controller (default v3.7.3).
func TestSmoke(t *testing.T) {
	argo := os.Getenv("ADH_ARGO_VERSION")
	if argo == "" {
		argo = DefaultArgoVersion
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()

	start := time.Now()
	c, err := Start(ctx, Options{ArgoVersion: argo, Nodes: 2, KeepDir: true, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	uninstall := c.StopOnSignal(nil)
	defer uninstall()
	t.Logf("stack up in %s (argo %s); kubeconfig %s", time.Since(start).Round(time.Millisecond), argo, c.Kubeconfig())
	pids := c.PIDs()
	stopAtEnd(t, c)
	logRSS(t, pids)

	kube := c.Kube()

	// The ApiServerSource adapter sends pod events of workflow pods to a sink.
	sink, err := cesink.Record()
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	if _, err := os.Stat(filepath.Join(c.opts.CacheDir, "adapter-"+AdapterVersion, "apiserver_receive_adapter")); err == nil {
		if err := c.StartAdapter(sink.URL, []string{ArgoNamespace}, "workflows.argoproj.io/workflow"); err != nil {
			t.Fatal(err)
		}
		pids = c.PIDs()
	} else {
		t.Logf("adapter not built, skipping the adapter part")
		sink = nil
	}

	// 1. A one-step workflow on kwok-node-0 runs and completes.
	pod := runOneStepWorkflow(ctx, t, c, "smoke-", sink)
	p, err := kube.CoreV1().Pods(ArgoNamespace).Get(ctx, pod.Name, metav1.GetOptions{})
	if err == nil {
		t.Logf("pod %s: %s", p.Name, podSummary(p))
	}

	// 2. A pod on a Node that is deleted is removed by PodGC (kube-controller-manager).
	gpod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "orphan", Namespace: ArgoNamespace},
		Spec: corev1.PodSpec{
			NodeName:      "kwok-node-1",
			RestartPolicy: corev1.RestartPolicyNever,
			Containers:    []corev1.Container{{Name: "main", Image: "busybox"}},
		},
	}
	if _, err := kube.CoreV1().Pods(ArgoNamespace).Create(ctx, gpod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		p, err := kube.CoreV1().Pods(ArgoNamespace).Get(ctx, "orphan", metav1.GetOptions{})
		return err == nil && p.Status.Phase == corev1.PodRunning, nil
	})
	if err != nil {
		t.Fatalf("orphan pod not Running: %v", err)
	}
	if err := kube.CoreV1().Nodes().Delete(ctx, "kwok-node-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	deleted := time.Now()
	var last *corev1.Pod
	err = wait.PollUntilContextTimeout(ctx, time.Second, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		p, err := kube.CoreV1().Pods(ArgoNamespace).Get(ctx, "orphan", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		if err == nil {
			last = p
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("PodGC did not remove the pod of the deleted Node: %v (last %s)", err, podSummary(last))
	}
	t.Logf("PodGC removed the pod %s after the Node was deleted", time.Since(deleted).Round(time.Millisecond))

	// 3. Stop leaves nothing behind.
	c.Stop()
	c.Stop() // idempotent
	for n, pid := range pids {
		if err := syscall.Kill(pid, 0); err == nil {
			t.Errorf("%s (pid %d) still alive after Stop", n, pid)
		}
	}
	re := "^" + regexp.QuoteMeta(c.opts.CacheDir+string(filepath.Separator))
	out, err := exec.Command("pgrep", "-a", "-f", re).CombinedOutput()
	if err == nil {
		t.Errorf("processes from %s still running after Stop:\n%s", c.opts.CacheDir, out)
	} else {
		t.Logf("pgrep -f %q: none left", re)
	}
}

// TestArgoVersions runs the one-step workflow under every Argo version that
// is built, one controller after the other on the same stack (RestartArgo).
func TestArgoVersions(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	c, err := Start(ctx, Options{NoArgo: true, KeepDir: true, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	uninstall := c.StopOnSignal(nil)
	defer uninstall()
	stopAtEnd(t, c)
	ran := 0
	for _, v := range ArgoVersions {
		if checkBin(filepath.Join(c.opts.CacheDir, "argo-"+v, "workflow-controller"), "argo-"+v) != nil {
			t.Logf("argo %s not built, skipped", v)
			continue
		}
		start := time.Now()
		if err := c.RestartArgo(ctx, v, nil); err != nil {
			t.Fatal(err)
		}
		t.Logf("argo %s healthy in %s", v, time.Since(start).Round(time.Millisecond))
		runOneStepWorkflow(ctx, t, c, "v"+strings.ReplaceAll(strings.TrimPrefix(v, "v"), ".", "-")+"-", nil)
		ran++
	}
	c.StopArgo()
	if ran == 0 {
		t.Skip("no argo version built")
	}
}

// stopAtEnd stops c (started with KeepDir) when the test ends and removes its directory unless
// the test failed.
func stopAtEnd(t *testing.T, c *Cluster) {
	t.Cleanup(func() {
		c.Stop()
		if t.Failed() {
			t.Logf("logs kept in %s", c.LogDir())
		} else {
			_ = os.RemoveAll(c.Dir())
		}
	})
}

// runOneStepWorkflow submits a one-step workflow pinned to kwok-node-0,
// waits for its pod to run, does what the wait container would do, completes
// the pod and waits for the workflow to succeed. Returns the pod.
func runOneStepWorkflow(ctx context.Context, t *testing.T, c *Cluster, generateName string, sink *cesink.Sink) *corev1.Pod {
	t.Helper()
	kube := c.Kube()
	wfs := c.Dynamic().Resource(WorkflowGVR).Namespace(ArgoNamespace)
	var err error
	wf := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(`
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata:
  generateName: `+generateName+`
  namespace: argo
spec:
  entrypoint: main
  podSpecPatch: '{"nodeName":"kwok-node-0"}'
  templates:
  - name: main
    container:
      image: busybox
      command: [sh, -c, "sleep 3600"]
`), &wf.Object); err != nil {
		t.Fatal(err)
	}
	submitted := time.Now()
	wf, err = wfs.Create(ctx, wf, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	name := wf.GetName()
	t.Logf("submitted workflow %s", name)

	var pod *corev1.Pod
	err = wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 90*time.Second, true, func(ctx context.Context) (bool, error) {
		pods, err := kube.CoreV1().Pods(ArgoNamespace).List(ctx, metav1.ListOptions{LabelSelector: "workflows.argoproj.io/workflow=" + name})
		if err != nil || len(pods.Items) == 0 {
			return false, nil
		}
		pod = &pods.Items[0]
		return pod.Status.Phase == corev1.PodRunning, nil
	})
	if err != nil {
		t.Fatalf("pod of %s not Running: %v (pod: %+v)", name, err, podSummary(pod))
	}
	t.Logf("pod %s Running on %s after %s", pod.Name, pod.Spec.NodeName, time.Since(submitted).Round(time.Millisecond))
	if pod.Spec.NodeName != "kwok-node-0" {
		t.Fatalf("pod on node %q", pod.Spec.NodeName)
	}
	nodeID := pod.Annotations["workflows.argoproj.io/node-id"]
	if nodeID == "" {
		nodeID = pod.Name // pod name v1
	}
	// What the wait container does at start and at the end.
	if err := c.CreateTaskResult(ctx, ArgoNamespace, name, string(wf.GetUID()), nodeID, false); err != nil {
		t.Fatal(err)
	}
	if err := c.SetTaskResultCompleted(ctx, ArgoNamespace, nodeID, true); err != nil {
		t.Fatal(err)
	}
	completed := time.Now()
	if err := c.CompletePod(ctx, ArgoNamespace, pod.Name, true); err != nil {
		t.Fatal(err)
	}
	phase := waitWorkflowPhase(ctx, t, c, name, "Succeeded", 90*time.Second)
	t.Logf("workflow %s %s %s after the pod was completed", name, phase, time.Since(completed).Round(time.Millisecond))
	if sink != nil {
		types := func() []string {
			var out []string
			for _, e := range sink.Events(cesink.PodSubject(ArgoNamespace, pod.Name)) {
				out = append(out, e.Type())
			}
			return out
		}
		err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
			evs := types()
			return len(evs) >= 2 && evs[0] == "dev.knative.apiserver.resource.add", nil
		})
		if err != nil {
			t.Fatalf("adapter events for pod %s: %v (all: %s)", pod.Name, types(), sink.Summary())
		}
		t.Logf("adapter events for pod %s: %v", pod.Name, types())
	}
	return pod
}

func waitWorkflowPhase(ctx context.Context, t *testing.T, c *Cluster, name, want string, timeout time.Duration) string {
	t.Helper()
	var phase, msg string
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		u, err := c.Dynamic().Resource(WorkflowGVR).Namespace(ArgoNamespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		phase, _, _ = unstructured.NestedString(u.Object, "status", "phase")
		msg, _, _ = unstructured.NestedString(u.Object, "status", "message")
		return phase == want, nil
	})
	if err != nil {
		t.Fatalf("workflow %s phase %q (message %q), want %s: %v", name, phase, msg, want, err)
	}
	return phase
}

func podSummary(p *corev1.Pod) string {
	if p == nil {
		return "<none>"
	}
	var b strings.Builder
	b.WriteString("phase=" + string(p.Status.Phase))
	if p.DeletionTimestamp != nil {
		b.WriteString(" deleting")
	}
	for _, cs := range p.Status.ContainerStatuses {
		switch {
		case cs.State.Running != nil:
			b.WriteString(" " + cs.Name + "=running")
		case cs.State.Terminated != nil:
			b.WriteString(" " + cs.Name + "=exit:" + itoa(int(cs.State.Terminated.ExitCode)))
		case cs.State.Waiting != nil:
			b.WriteString(" " + cs.Name + "=waiting")
		}
	}
	return b.String()
}

func itoa(i int) string { return strconv.Itoa(i) }

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

// logRSS logs the resident set size of each process (from /proc).
func logRSS(t *testing.T, pids map[string]int) {
	var total int
	for n, pid := range pids {
		b, err := os.ReadFile(filepath.Join("/proc", itoa(pid), "status"))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "VmRSS:") {
				f := strings.Fields(line)
				if len(f) >= 2 {
					kb := atoi(f[1])
					total += kb
					t.Logf("RSS %-24s %6d MB", n, kb/1024)
				}
			}
		}
	}
	t.Logf("RSS total %d MB", total/1024)
}
