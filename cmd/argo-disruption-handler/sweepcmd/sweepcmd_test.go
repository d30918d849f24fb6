package sweepcmd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"function/internal/repair"
	"function/internal/sweep"
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

func TestRunRefusesBadFlags(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"-o", "yaml"}, "want table or json"},
		{[]string{"-A", "-n", "argo"}, "exclusive"},
		{[]string{"--no-such-flag"}, "flag provided but not defined"},
		{[]string{"--repair", "--dry-run"}, "exclusive"},
	}
	for _, c := range cases {
		var out, errOut bytes.Buffer
		if code := Run(context.Background(), c.args, &out, &errOut); code != ExitError || !strings.Contains(errOut.String(), c.want) {
			t.Errorf("%v: exit %d, stderr %q", c.args, code, errOut.String())
		}
	}
	var out, errOut bytes.Buffer
	if code := Run(context.Background(), []string{"-h"}, &out, &errOut); code != ExitClean || !strings.Contains(errOut.String(), "Exit status") {
		t.Errorf("-h: exit %d, %q", code, errOut.String())
	}
}

func TestRunUnreachableCluster(t *testing.T) {
	t.Setenv("KUBECONFIG", "/nonexistent/kubeconfig")
	var out, errOut bytes.Buffer
	code := Run(context.Background(), []string{"-A", "--kubeconfig", "/nonexistent/kubeconfig"}, &out, &errOut)
	if code != ExitError || !strings.Contains(errOut.String(), "sweep:") {
		t.Errorf("exit %d, stderr %q", code, errOut.String())
	}
}

// The audit command reads by default: only --repair writes (--dry-run, the old way to read, is
// still accepted).
func TestSweepReadsByDefault(t *testing.T) {
	for _, tc := range []struct {
		args   []string
		dryRun bool
	}{
		{nil, true},
		{[]string{"-A"}, true},
		{[]string{"--dry-run"}, true},
		{[]string{"--repair"}, false},
		{[]string{"-A", "--repair", "-o", "json"}, false},
	} {
		var errOut bytes.Buffer
		f, code, ok := parse(tc.args, &errOut)
		if !ok {
			t.Fatalf("%v: refused (exit %d): %s", tc.args, code, errOut.String())
		}
		if f.dryRun != tc.dryRun {
			t.Errorf("%v: dry run = %v, want %v", tc.args, f.dryRun, tc.dryRun)
		}
	}
}
