//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"function/cmd/argo-disruption-handler/sweepcmd"
	"function/internal/argoworkflow"
	"function/internal/localcluster"
	"function/internal/localcluster/scenario"
	"function/internal/manifests"
	"function/internal/repair"
)

// TestSweep proves the safety net on the real control plane, with Argo ADH_E2E_SWEEP_ARGO
// (default v3.5.10, which never heals a workflow whose pod was deleted): a workflow pod is
// force-deleted while no event source runs, so the function never hears of it. The settings are
// the chart's ConfigMap, as users get them: the function runs with its data as environment (as
// the pod's envFrom), and the audit reads it from the API server, with no settings flag.
//  1. `argo-disruption-handler sweep -A -o json` (read-only by default) lists the workflow, the node and the
//     ladder step, exits 1, and changes nothing (the task result stays incomplete, no record);
//     it says where its settings came from, and without the ConfigMap it exits 2;
//  2. a PingSource CloudEvent posted to the function (as the broker delivers it) repairs it: the
//     task result is completed, the record written, and the workflow leaves Running at the
//     controller's next reconcile;
//  3. the audit run again, as the kubectl plugin (`kubectl argo-disruption-handler sweep -A`),
//     finds nothing and exits 0.
func TestSweep(t *testing.T) {
	version := env("ADH_E2E_SWEEP_ARGO", "v3.5.10")
	ctx := context.Background()
	bin, c, e := functionStack(ctx, t, localcluster.Options{ArgoVersion: version, Nodes: 1}, 120*time.Second)
	if err := e.EnsureNamespace(ctx, nsWith); err != nil {
		t.Fatal(err)
	}
	createFromChart(ctx, t, c, c.Dynamic(), chartObject{"ConfigMap", sweepcmd.SettingsConfigMap})
	cm, err := e.Kube.CoreV1().ConfigMaps(manifests.Namespace).Get(ctx, sweepcmd.SettingsConfigMap, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	stateNS := cm.Data["ADH_STATE_NAMESPACE"]
	settings := maps.Clone(cm.Data)
	// The local run's own: debug logs, and metrics on a free port (StartFunction's defaults).
	delete(settings, "ADH_LOG_LEVEL")
	delete(settings, "ADH_METRICS_ADDRESS")
	fn := runFunction(ctx, t, bin, c, settings)
	plugin := buildPlugin(ctx, t)
	audit := []string{bin, "sweep", "--kubeconfig", c.Kubeconfig()}

	wf, pod, nodeID, err := e.RunningStep(ctx, "sweep-", scenario.Spec{Namespace: nsWith, Node: localcluster.NodeName(0)})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(11 * time.Second) // past Argo's RECENTLY_STARTED_POD_DURATION
	deleted, err := e.Delete(ctx, pod, scenario.Force)
	if err != nil {
		t.Fatal(err)
	}
	// Let the controller do all it does by itself (node Error "pod deleted"; the gate holds).
	time.Sleep(12 * time.Second)
	var report []string

	// 1. The audit over every namespace, without --repair: it must change nothing.
	rows, code, stderr := runAudit(ctx, t, nil, append(audit, "-A", "-o", "json")...)
	report = append(report, fmt.Sprintf("`sweep -A -o json` (pod deleted %s ago, no event delivered): exit %d, %d row(s); stderr %q", since(deleted), code, len(rows), strings.TrimSpace(stderr)))
	if code != sweepcmd.ExitStuck || len(rows) != 1 {
		t.Fatalf("audit: exit %d, rows %+v, want exit 1 and one row\n%s", code, rows, stderr)
	}
	if want := "sweep: settings from ConfigMap " + manifests.Namespace + "/" + sweepcmd.SettingsConfigMap + ": "; !strings.Contains(stderr, want) {
		t.Errorf("audit stderr lacks %q:\n%s", want, stderr)
	}
	r := rows[0]
	if r.Workflow != wf.Name || r.NodeID != nodeID || r.PodState != "gone" || !r.DryRun || len(r.Steps) == 0 || r.Steps[0] != "complete-task-result" {
		t.Errorf("audit row %+v", r)
	}
	tr, err := e.Argo.ArgoprojV1alpha1().WorkflowTaskResults(nsWith).Get(ctx, nodeID, metav1.GetOptions{})
	if err != nil || tr.Labels[argoworkflow.LabelReportOutputsCompleted] != "false" {
		t.Fatalf("after the dry run: task result %v (err %v), want still \"false\"", tr.Labels, err)
	}
	if cur, err := e.Argo.ArgoprojV1alpha1().Workflows(nsWith).Get(ctx, wf.Name, metav1.GetOptions{}); err != nil || repair.HasRecord(cur, nodeID) || cur.Status.Phase != "Running" {
		t.Fatalf("after the dry run: workflow %s phase %s record %v (err %v)", wf.Name, cur.Status.Phase, repair.HasRecord(cur, nodeID), err)
	}
	if evs, _ := e.Kube.CoreV1().Events(nsWith).List(ctx, metav1.ListOptions{FieldSelector: "source=" + argoworkflow.Component}); evs != nil && len(evs.Items) > 0 {
		t.Errorf("dry run created %d Event(s)", len(evs.Items))
	}
	// Where no chart is installed, the audit says so instead of judging with other settings.
	_, code, stderr = runAudit(ctx, t, nil, append(audit, "-A", "--settings-namespace", nsWith)...)
	report = append(report, fmt.Sprintf("`sweep -A --settings-namespace %s` (no ConfigMap there): exit %d, stderr %q", nsWith, code, strings.TrimSpace(stderr)))
	if code != sweepcmd.ExitError || !strings.Contains(stderr, "no ConfigMap "+nsWith+"/"+sweepcmd.SettingsConfigMap) || !strings.Contains(stderr, "--settings-from-env") {
		t.Errorf("audit without its ConfigMap: exit %d, want 2 naming it\n%s", code, stderr)
	}

	// 2. The next ping.
	pinged := time.Now()
	if status := ping(t, fn.URL); status != http.StatusOK {
		t.Fatalf("ping answered %d", status)
	}
	report = append(report, fmt.Sprintf("PingSource event → answered 200 in %s", since(pinged)))
	var completedAt time.Duration
	if err := waitFor(ctx, 10*time.Second, func() bool {
		tr, err := e.Argo.ArgoprojV1alpha1().WorkflowTaskResults(nsWith).Get(ctx, nodeID, metav1.GetOptions{})
		if err == nil && tr.Labels[argoworkflow.LabelReportOutputsCompleted] == "true" {
			completedAt = time.Since(pinged)
			return true
		}
		return false
	}); err != nil {
		t.Fatalf("task result %s not completed after the ping", nodeID)
	}
	var final string
	if err := waitFor(ctx, 60*time.Second, func() bool {
		cur, err := e.Argo.ArgoprojV1alpha1().Workflows(nsWith).Get(ctx, wf.Name, metav1.GetOptions{})
		if err == nil && cur.Status.Phase.Completed() {
			final = fmt.Sprintf("%s %q", cur.Status.Phase, cur.Status.Message)
			return true
		}
		return false
	}); err != nil {
		t.Errorf("workflow %s still Running 60 s after the ping", wf.Name)
	}
	report = append(report, fmt.Sprintf("ping → task result completed %.2f s, workflow %s %s after the ping", completedAt.Seconds(), final, since(pinged)))
	cur, _ := e.Argo.ArgoprojV1alpha1().Workflows(nsWith).Get(ctx, wf.Name, metav1.GetOptions{})
	if rec, ok := repair.Recorded(cur)[nodeID]; !ok || !strings.Contains(rec.Trigger, "sweep") {
		t.Errorf("record %+v, want one by the sweep", rec)
	}
	lease, err := e.Kube.CoordinationV1().Leases(stateNS).Get(ctx, "argo-disruption-handler-sweep", metav1.GetOptions{})
	if err != nil || lease.Spec.HolderIdentity != nil {
		t.Errorf("sweep lease after the run: %+v (err %v), want released", lease, err)
	}

	// What the function counted, as Prometheus reads it.
	body := getMetrics(t, fn.MetricsURL())
	for _, want := range []string{
		`argo_disruption_handler_events_total{outcome="handled",type="dev.knative.sources.ping"} 1`,
		`argo_disruption_handler_repairs_total{action="complete-task-result",dry_run="false",reason="unknown"} 1`,
		`argo_disruption_handler_sweep_stuck_workflow_nodes 1`,
		`argo_disruption_handler_sweep_workflows_scanned 1`,
		`argo_disruption_handler_api_request_duration_seconds_count{code="200",resource="workflowtaskresults",verb="patch"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	report = append(report, "/metrics after the ping: events_total{ping,handled} 1, repairs_total{complete-task-result} 1, sweep_stuck_workflow_nodes 1")

	// 3. Nothing left, as the kubectl plugin finds (the plugin binary itself without a kubectl).
	argv := []string{plugin, "sweep"}
	if c.KubectlPath() != "" {
		argv = []string{c.KubectlPath(), "argo-disruption-handler", "sweep"}
	}
	rows, code, stderr = runAudit(ctx, t, []string{"PATH=" + filepath.Dir(plugin) + string(os.PathListSeparator) + os.Getenv("PATH")},
		append(argv, "-A", "--kubeconfig", c.Kubeconfig())...)
	report = append(report, fmt.Sprintf("`%s %s -A` after the repair: exit %d, %d row(s)", filepath.Base(argv[0]), strings.Join(argv[1:], " "), code, len(rows)))
	if code != sweepcmd.ExitClean {
		t.Errorf("second audit: exit %d\n%s", code, stderr)
	}
	for _, l := range report {
		t.Log(l)
	}
	if out := os.Getenv("ADH_E2E_SWEEP_REPORT"); out != "" {
		doc := fmt.Sprintf("Argo %s, measured %s:\n", version, time.Now().UTC().Format("2006-01-02 15:04 MST"))
		for _, l := range report {
			doc += "- " + l + "\n"
		}
		_ = os.WriteFile(out, []byte(doc), 0o644)
	}
}

func getMetrics(t *testing.T, url string) string {
	t.Helper()
	if url == "" {
		t.Fatal("the function logged no metrics address")
	}
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// runAudit runs the audit command argv with env added, and decodes its JSON rows (table output
// gives none). An ADH_* setting in its environment that would hide the workflow shows that the
// command reads the deployed settings, not the terminal's.
func runAudit(ctx context.Context, t *testing.T, env []string, argv ...string) ([]sweepcmd.Row, int, string) {
	t.Helper()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(append(os.Environ(), "ADH_NAMESPACES=adh-not-deployed"), env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	var rows []sweepcmd.Row
	if len(bytes.TrimSpace(out.Bytes())) > 0 && bytes.HasPrefix(bytes.TrimSpace(out.Bytes()), []byte("[")) {
		if err := json.Unmarshal(out.Bytes(), &rows); err != nil {
			t.Fatalf("audit output: %v\n%s", err, out.String())
		}
	}
	return rows, code, errOut.String()
}

// buildPlugin builds the kubectl plugin, kubectl-argo_disruption_handler, into a folder of its own
// (to put on the PATH).
func buildPlugin(ctx context.Context, t *testing.T) string {
	t.Helper()
	root, _ := filepath.Abs("../..")
	bin := filepath.Join(t.TempDir(), "kubectl-argo_disruption_handler")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/kubectl-argo_disruption_handler")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the kubectl plugin: %v\n%s", err, out)
	}
	return bin
}

// ping posts a PingSource CloudEvent in binary mode, as the broker's Trigger delivers it.
func ping(t *testing.T, url string) int {
	t.Helper()
	e := jsonEvent(t, "ping", "/apis/v1/namespaces/argo-disruption-handler/pingsources/argo-disruption-handler-sweep",
		"dev.knative.sources.ping", []byte(`{"sweep":"running-workflows"}`))
	code, _ := post(t, url, e, nil)
	return code
}
