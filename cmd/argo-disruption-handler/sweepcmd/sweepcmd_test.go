package sweepcmd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"

	"function/config"
	"function/internal/apifake"
	"function/internal/manifests"
	"function/internal/repair"
	"function/internal/sweep"
	"function/internal/wiring"
)

func report() sweep.Report {
	stuck := sweep.Finding{
		Candidate: sweep.Candidate{
			Target:   repair.Target{Namespace: "etl", Workflow: "nightly-7k2xq", NodeID: "nightly-7k2xq-1770056762", PodName: "nightly-7k2xq-extract-1770056762", Reason: "unknown"},
			NodeName: "nightly-7k2xq[0].extract", PodState: "gone", Why: "node Error, its pod is gone, task result incomplete",
		},
		RunningFor: 95 * time.Minute,
		Result: repair.Result{Plan: repair.Plan{Actions: []repair.Action{repair.CompleteTaskResult}, Record: true},
			Done: []repair.Action{repair.CompleteTaskResult}, DryRun: true},
	}
	healthy := sweep.Finding{Candidate: sweep.Candidate{Target: repair.Target{Namespace: "etl", Workflow: "ok", NodeID: "ok-1"}},
		Result: repair.Result{Plan: repair.Plan{Skip: "pod is running"}}}
	failed := sweep.Finding{Candidate: sweep.Candidate{Target: repair.Target{Namespace: "ml", Workflow: "train", NodeID: "train-2"}, PodState: "gone"},
		Err: errors.New("reading workflow ml/train: connection refused")}
	return sweep.Report{Workflows: 3, Findings: []sweep.Finding{stuck, healthy, failed}}
}

func TestRowsAndOutput(t *testing.T) {
	rows := Rows(report())
	if len(rows) != 2 {
		t.Fatalf("%d rows, want the stuck one and the failed one: %+v", len(rows), rows)
	}
	r := rows[0]
	if r.Workflow != "nightly-7k2xq" || r.RunningFor != "1h35m0s" || strings.Join(r.Steps, "+") != "complete-task-result+record" || !r.DryRun || !r.Done {
		t.Errorf("row %+v", r)
	}
	if rows[1].Error == "" || rows[1].Done {
		t.Errorf("failed row %+v", rows[1])
	}
	var table bytes.Buffer
	if err := print(&table, "table", rows); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(table.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "NAMESPACE") || !strings.Contains(lines[1], "nightly-7k2xq[0].extract") ||
		!strings.Contains(lines[1], "complete-task-result+record") || !strings.Contains(lines[2], "error: reading workflow ml/train") {
		t.Errorf("table:\n%s", table.String())
	}
	var js bytes.Buffer
	if err := print(&js, "json", rows); err != nil {
		t.Fatal(err)
	}
	var back []Row
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || len(back) != 2 || back[0].NodeID != r.NodeID {
		t.Errorf("json %s (err %v)", js.String(), err)
	}
	js.Reset()
	if err := print(&js, "json", nil); err != nil || strings.TrimSpace(js.String()) != "[]" {
		t.Errorf("empty json %q", js.String())
	}
}

// Bad command lines end with exit 2 and say what is wrong, before any cluster is read.
func TestRunRefusesBadFlags(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"-o", "yaml"}, "want table or json"},
		{[]string{"-A", "-n", "argo"}, "-A and -n are exclusive"},
		{[]string{"--all-namespaces", "--namespace=argo"}, "-A and -n are exclusive"},
		{[]string{"--no-such-flag"}, "unknown flag: --no-such-flag"},
		{[]string{"--repair", "--dry-run"}, "--repair and --dry-run are exclusive"},
		{[]string{"--settings-from-env", "--settings-namespace", "adh"}, "--settings-from-env and --settings-namespace are exclusive"},
		{[]string{"argo"}, `unexpected argument "argo"`},
		{[]string{"-n", "Not_A_NS"}, `"Not_A_NS" is not a namespace name`},
		{[]string{"--settings-namespace", "a/b"}, `"a/b" is not a namespace name`},
		{[]string{"--grace", "soon"}, "invalid argument"},
	}
	for _, c := range cases {
		var out, errOut bytes.Buffer
		code := run(context.Background(), "argo-disruption-handler", c.args, &out, &errOut, deps{})
		if code != ExitError || !strings.Contains(errOut.String(), c.want) || !strings.Contains(errOut.String(), "argo-disruption-handler sweep --help") {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 and %q", c.args, code, errOut.String(), c.want)
		}
	}
	var out, errOut bytes.Buffer
	if code := Run(context.Background(), Plugin, []string{"-h"}, &out, &errOut); code != ExitClean || errOut.Len() > 0 {
		t.Errorf("-h: exit %d, stderr %q", code, errOut.String())
	}
	for _, want := range []string{"kubectl argo-disruption-handler sweep", "Exit status", "--repair", "--settings-namespace", "--settings-from-env", "--kubeconfig", "--context", "--as ", "--request-timeout", "0 means 30s"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("-h lacks %q:\n%s", want, out.String())
		}
	}
}

func TestRunUnreachableCluster(t *testing.T) {
	var out, errOut bytes.Buffer
	code := Run(context.Background(), "argo-disruption-handler", []string{"-A", "--kubeconfig", "/nonexistent/kubeconfig"}, &out, &errOut)
	if code != ExitError || !strings.Contains(errOut.String(), "sweep: loading the cluster configuration") {
		t.Errorf("exit %d, stderr %q", code, errOut.String())
	}
}

// The audit command reads by default: only --repair writes (--dry-run, the old way to read, is
// still accepted). -n takes a list, kubectl's way or the command's.
func TestParse(t *testing.T) {
	for _, tc := range []struct {
		args       []string
		dryRun     bool
		namespaces []string
	}{
		{nil, true, nil},
		{[]string{"-A"}, true, nil},
		{[]string{"--dry-run"}, true, nil},
		{[]string{"--repair"}, false, nil},
		{[]string{"-A", "--repair", "-o", "json"}, false, nil},
		{[]string{"-n", "argo"}, true, []string{"argo"}},
		{[]string{"--namespace=argo,etl", "-n", " ml "}, true, []string{"argo", "etl", "ml"}},
		{[]string{"--repair", "-netl"}, false, []string{"etl"}},
	} {
		var out, errOut bytes.Buffer
		f, code, ok := parse("argo-disruption-handler", tc.args, &out, &errOut)
		if !ok {
			t.Fatalf("%v: refused (exit %d): %s", tc.args, code, errOut.String())
		}
		if f.dryRun != tc.dryRun || !slices.Equal(f.namespaces, tc.namespaces) {
			t.Errorf("%v: dry run %v namespaces %q, want %v %q", tc.args, f.dryRun, f.namespaces, tc.dryRun, tc.namespaces)
		}
	}
}

// The plugin's command line: `kubectl argo-disruption-handler` lists sweep and runs it.
func TestMain(t *testing.T) {
	for _, tc := range []struct {
		args             []string
		code             int
		wantOut, wantErr string
	}{
		{[]string{"--help"}, ExitClean, "sweep   list the Running workflows", ""},
		{[]string{"help"}, ExitClean, "kubectl argo-disruption-handler sweep --help", ""},
		{nil, ExitError, "", "Commands:\n  sweep"},
		{[]string{"audit"}, ExitError, "", `unknown command "audit"`},
		{[]string{"sweep", "--help"}, ExitClean, "Usage:\n  kubectl argo-disruption-handler sweep", ""},
		{[]string{"sweep", "--repair", "--dry-run"}, ExitError, "", "--repair and --dry-run are exclusive"},
	} {
		var out, errOut bytes.Buffer
		code := Main(context.Background(), Plugin, tc.args, &out, &errOut)
		if code != tc.code || !strings.Contains(out.String(), tc.wantOut) || !strings.Contains(errOut.String(), tc.wantErr) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want %d, %q, %q", tc.args, code, out.String(), errOut.String(), tc.code, tc.wantOut, tc.wantErr)
		}
	}
}

// The constants name what the chart renders: the settings ConfigMap, in the release namespace the
// install guide uses.
func TestSettingsNamesAreTheChartsOwn(t *testing.T) {
	helpers, err := os.ReadFile(filepath.Join(manifests.ChartDir(), "templates", "_helpers.tpl"))
	if err != nil {
		t.Fatal(err)
	}
	if want := `define "adh.settingsName" -}}` + SettingsConfigMap + `{{`; !strings.Contains(string(helpers), want) {
		t.Errorf("the chart's adh.settingsName is not %s", SettingsConfigMap)
	}
	if DefaultSettingsNamespace != manifests.Namespace {
		t.Errorf("default settings namespace %s, the chart installs into %s", DefaultSettingsNamespace, manifests.Namespace)
	}
}

// kubeconfig has two contexts on an unreachable server (the fake API answers instead): "argo"
// (current, namespace argo) and "etl".
const kubeconfig = `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
contexts:
- {name: argo, context: {cluster: c, user: u, namespace: argo}}
- {name: etl, context: {cluster: c, user: u, namespace: etl}}
current-context: argo
users: [{name: u, user: {token: t}}]
`

func settingsIn(ns string, data map[string]string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: SettingsConfigMap}, Data: data}
}

// The settings are the deployed ones (the chart's ConfigMap), or with --settings-from-env the
// environment's; their scope and grace decide what the sweep reads, as in the function. The
// cluster holds one stuck workflow, in namespace argo (node Error, pod gone, task result
// incomplete). Whether the writes were dry runs is judged by the rows: the Argo fake clientset
// drops the patch options (test/e2e proves that a dry run changes nothing).
func TestSettings(t *testing.T) {
	forbidden := apierrors.NewForbidden(schema.GroupResource{Resource: "configmaps"}, SettingsConfigMap, errors.New("RBAC: access denied"))
	cases := []struct {
		name     string
		cm       *corev1.ConfigMap
		env      map[string]string
		failGet  error
		args     []string
		code     int
		stderr   []string
		check    func(t *testing.T, cfg *config.Config, rc *rest.Config)
		repaired bool // the rows' writes were real, not dry runs
	}{
		{name: "deployed ConfigMap in the default namespace",
			cm: settingsIn(DefaultSettingsNamespace, map[string]string{"ADH_NAMESPACES": "argo,etl", "ADH_SWEEP_GRACE": "5m", "ADH_EXCLUDED_NAMESPACES": ""}), args: []string{"-A"},
			code: ExitStuck, stderr: []string{"sweep: settings from ConfigMap argo-disruption-handler/argo-disruption-handler-settings: namespaces argo,etl, workflows without a controller instance ID, grace 5m0s\n", "would be repaired (dry run"},
			check: func(t *testing.T, cfg *config.Config, rc *rest.Config) {
				if !slices.Equal(cfg.Namespaces, []string{"argo", "etl"}) || cfg.ExcludedNamespaces != nil || cfg.SweepGrace != 5*time.Minute || !cfg.DryRun {
					t.Errorf("config %+v", cfg)
				}
			}},
		{name: "the environment does not count without --settings-from-env",
			cm: settingsIn(DefaultSettingsNamespace, nil), env: map[string]string{"ADH_NAMESPACES": "etl"}, args: []string{"-A"},
			code: ExitStuck, stderr: []string{"every namespace except kube-system, workflows without a controller instance ID, grace 2m0s"}},
		{name: "the deployed namespaces leave argo out",
			cm: settingsIn(DefaultSettingsNamespace, map[string]string{"ADH_NAMESPACES": "etl"}), args: []string{"-A"},
			code: ExitClean, stderr: []string{"0 stuck nodes"}},
		{name: "-n outside the deployed scope: said, not scanned",
			cm: settingsIn(DefaultSettingsNamespace, map[string]string{"ADH_EXCLUDED_NAMESPACES": "argo"}), args: []string{"-n", "argo"},
			code: ExitClean, stderr: []string{`namespace argo is outside the deployed scope (ADH_NAMESPACES "", ADH_EXCLUDED_NAMESPACES "argo"): not scanned`}},
		{name: "another controller's workflows only",
			cm: settingsIn(DefaultSettingsNamespace, map[string]string{"ADH_INSTANCE_ID": "ci"}), args: []string{"-A"},
			code: ExitClean, stderr: []string{`controller instance ID "ci"`, "0 stuck nodes"}},
		{name: "--settings-namespace names the release namespace",
			cm: settingsIn("adh-prod", map[string]string{"ADH_LOG_LEVEL": "debug"}), args: []string{"-A", "--settings-namespace", "adh-prod"},
			code: ExitStuck, stderr: []string{"settings from ConfigMap adh-prod/argo-disruption-handler-settings"}},
		{name: "no ConfigMap: exit 2 naming the namespace and both flags",
			args: []string{"-A"},
			code: ExitError, stderr: []string{"no ConfigMap argo-disruption-handler/argo-disruption-handler-settings", "namespace argo-disruption-handler?", "--settings-namespace", "--settings-from-env"}},
		{name: "no ConfigMap in the namespace asked",
			cm: settingsIn(DefaultSettingsNamespace, nil), args: []string{"-A", "--settings-namespace", "adh-prod"},
			code: ExitError, stderr: []string{"no ConfigMap adh-prod/argo-disruption-handler-settings", "namespace adh-prod?"}},
		{name: "ConfigMap not readable",
			cm: settingsIn(DefaultSettingsNamespace, nil), failGet: forbidden, args: []string{"-A"},
			code: ExitError, stderr: []string{"reading ConfigMap argo-disruption-handler/argo-disruption-handler-settings", "access denied", "--settings-from-env"}},
		{name: "invalid settings in the ConfigMap",
			cm: settingsIn(DefaultSettingsNamespace, map[string]string{"ADH_SWEEP_GRACE": "5s", "ADH_KUBE_QPS": "fast"}), args: []string{"-A"},
			code: ExitError, stderr: []string{"settings in ConfigMap argo-disruption-handler/argo-disruption-handler-settings", "ADH_KUBE_QPS"}},
		{name: "--settings-from-env reads ADH_* and no ConfigMap",
			env: map[string]string{"ADH_NAMESPACES": "argo", "ADH_SWEEP_GRACE": "3m"}, args: []string{"-A", "--settings-from-env"},
			code: ExitStuck, stderr: []string{"sweep: settings from the ADH_* environment (--settings-from-env): namespaces argo except kube-system"},
			check: func(t *testing.T, cfg *config.Config, rc *rest.Config) {
				if cfg.SweepGrace != 3*time.Minute {
					t.Errorf("grace %s, want the environment's 3m", cfg.SweepGrace)
				}
			}},
		{name: "--settings-from-env leaves the ConfigMap alone",
			cm: settingsIn(DefaultSettingsNamespace, map[string]string{"ADH_NAMESPACES": "etl"}), env: map[string]string{"ADH_NAMESPACES": "argo"}, args: []string{"-A", "--settings-from-env"},
			code: ExitStuck},
		{name: "invalid environment",
			env: map[string]string{"ADH_LOG_LEVEL": "loud"}, args: []string{"-A", "--settings-from-env"},
			code: ExitError, stderr: []string{"settings from the environment", "ADH_LOG_LEVEL"}},
		{name: "--grace over the deployed grace",
			cm: settingsIn(DefaultSettingsNamespace, map[string]string{"ADH_SWEEP_GRACE": "5m"}), args: []string{"-A", "--grace", "45s"},
			code: ExitStuck, stderr: []string{"grace 45s (--grace)"},
			check: func(t *testing.T, cfg *config.Config, rc *rest.Config) {
				if cfg.SweepGrace != 45*time.Second {
					t.Errorf("grace %s", cfg.SweepGrace)
				}
			}},
		{name: "--grace under the settings' floor",
			cm: settingsIn(DefaultSettingsNamespace, nil), args: []string{"-A", "--grace", "5s"},
			code: ExitError, stderr: []string{"--grace 5s: ADH_SWEEP_GRACE: 5s is shorter than 30s"}},
		{name: "reads even when the function is deployed to write",
			cm: settingsIn(DefaultSettingsNamespace, map[string]string{"ADH_DRY_RUN": "false"}), args: []string{"-A"},
			code: ExitStuck},
		{name: "--repair writes, even when the function is deployed in dry run",
			cm: settingsIn(DefaultSettingsNamespace, map[string]string{"ADH_DRY_RUN": "true"}), args: []string{"-A", "--repair"},
			code: ExitStuck, stderr: []string{"ADH_DRY_RUN=true; --repair writes all the same", "stuck nodes repaired"}, repaired: true,
			check: func(t *testing.T, cfg *config.Config, rc *rest.Config) {
				if cfg.DryRun {
					t.Error("--repair ran as a dry run")
				}
			}},
		{name: "no notifications from a terminal",
			cm: settingsIn(DefaultSettingsNamespace, map[string]string{"ADH_NOTIFICATION_SINK": "http://sink.example/"}), args: []string{"-A"},
			code: ExitStuck,
			check: func(t *testing.T, cfg *config.Config, rc *rest.Config) {
				if cfg.NotificationSink != "" {
					t.Errorf("notification sink %q", cfg.NotificationSink)
				}
			}},
		{name: "the kubeconfig context's namespace by default",
			cm: settingsIn(DefaultSettingsNamespace, nil), code: ExitStuck},
		{name: "--context picks the namespace with the cluster",
			cm: settingsIn(DefaultSettingsNamespace, nil), args: []string{"--context", "etl"}, code: ExitClean},
		{name: "kubectl's flags reach the REST config; requests bounded by default",
			cm: settingsIn(DefaultSettingsNamespace, nil), args: []string{"-A"}, code: ExitStuck,
			check: func(t *testing.T, cfg *config.Config, rc *rest.Config) {
				if rc.Timeout != DefaultRequestTimeout || rc.Host != "https://127.0.0.1:1" || rc.UserAgent != "argo-disruption-handler-sweep" {
					t.Errorf("REST config: timeout %s host %s agent %s", rc.Timeout, rc.Host, rc.UserAgent)
				}
			}},
		{name: "--request-timeout, --as",
			cm: settingsIn(DefaultSettingsNamespace, nil), args: []string{"-A", "--request-timeout", "5s", "--as", "alice"}, code: ExitStuck,
			check: func(t *testing.T, cfg *config.Config, rc *rest.Config) {
				if rc.Timeout != 5*time.Second || rc.Impersonate.UserName != "alice" {
					t.Errorf("REST config: timeout %s impersonating %q", rc.Timeout, rc.Impersonate.UserName)
				}
			}},
		{name: "--request-timeout 0 is the default bound",
			cm: settingsIn(DefaultSettingsNamespace, nil), args: []string{"-A", "--request-timeout", "0"}, code: ExitStuck,
			check: func(t *testing.T, cfg *config.Config, rc *rest.Config) {
				if rc.Timeout != DefaultRequestTimeout {
					t.Errorf("REST config: timeout %s", rc.Timeout)
				}
			}},
		{name: "bad --request-timeout",
			cm: settingsIn(DefaultSettingsNamespace, nil), args: []string{"-A", "--request-timeout", "soon"}, code: ExitError,
			stderr: []string{"loading the cluster configuration"}},
	}
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kc, []byte(kubeconfig), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clearSettingsEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			objs := []runtime.Object{apifake.Workflow(apifake.WithNodePhase(wfv1.NodeError)), apifake.TaskResult("false")}
			if tc.cm != nil {
				objs = append(objs, tc.cm)
			}
			c := apifake.NewCluster(objs...)
			if tc.failGet != nil {
				c.FailNext("get configmaps", tc.failGet)
			}
			var gotCfg *config.Config
			var gotRC *rest.Config
			d := deps{
				kube: func(*rest.Config) (kubernetes.Interface, error) { return c.Kube, nil },
				sweeper: func(cfg *config.Config, rc *rest.Config) (*sweep.Sweeper, error) {
					gotCfg, gotRC = cfg, rc
					return wiring.FromClients(cfg, &wiring.Clients{Kube: c.Kube, Argo: c.Argo}, nil, nil).Sweeper, nil
				},
			}
			var out, errOut bytes.Buffer
			code := run(context.Background(), "argo-disruption-handler", append([]string{"--kubeconfig", kc, "-o", "json"}, tc.args...), &out, &errOut, d)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout %s\nstderr %s", code, tc.code, out.String(), errOut.String())
			}
			for _, want := range tc.stderr {
				if !strings.Contains(errOut.String(), want) {
					t.Errorf("stderr lacks %q:\n%s", want, errOut.String())
				}
			}
			if code != ExitError && strings.Count(errOut.String(), "sweep: settings from ") != 1 {
				t.Errorf("stderr does not say once where the settings came from:\n%s", errOut.String())
			}
			if tc.check != nil {
				if gotCfg == nil {
					t.Fatal("no sweep built")
				}
				tc.check(t, gotCfg, gotRC)
			}
			if code != ExitStuck {
				return
			}
			var rows []Row
			if err := json.Unmarshal(out.Bytes(), &rows); err != nil || len(rows) != 1 {
				t.Fatalf("rows %s (err %v), want the stuck node", out.String(), err)
			}
			if r := rows[0]; r.NodeID != apifake.NodeID || r.DryRun == tc.repaired || !r.Done {
				t.Errorf("row %+v, want node %s done, dry run %v", r, apifake.NodeID, !tc.repaired)
			}
		})
	}
}

// clearSettingsEnv unsets every variable config.Load could read (ADH_X, and envconfig's bare X),
// for the test.
func clearSettingsEnv(t *testing.T) {
	t.Helper()
	typ := reflect.TypeOf(config.Config{})
	for i := range typ.NumField() {
		tag := typ.Field(i).Tag.Get("envconfig")
		for _, k := range []string{config.Prefix + "_" + tag, tag} {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
}

// The real clients are built from the REST config kubectl's flags resolved, without a kubeconfig
// and without contacting the API server.
func TestOnClusterUsesTheRESTConfig(t *testing.T) {
	t.Setenv("KUBECONFIG", "/nonexistent/kubeconfig") // not read
	cfg, err := config.FromMap(nil)
	if err != nil {
		t.Fatal(err)
	}
	rc := &rest.Config{Host: "https://127.0.0.1:1", Timeout: 7 * time.Second, UserAgent: "argo-disruption-handler-sweep"}
	sw, err := onCluster.sweeper(cfg, rc)
	if err != nil || sw == nil {
		t.Fatalf("sweeper %v, err %v", sw, err)
	}
	if _, err := onCluster.kube(rc); err != nil {
		t.Fatal(err)
	}
}
