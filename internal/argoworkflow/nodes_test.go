package argoworkflow

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"strings"
	"testing"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
)

func TestNodes(t *testing.T) {
	nodes := wfv1.Nodes{"wf-1": {ID: "wf-1", Type: wfv1.NodeTypePod, Phase: wfv1.NodeRunning}}
	packed, err := Compress(nodes)
	if err != nil {
		t.Fatal(err)
	}
	bomb := func() string {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		_, _ = zw.Write([]byte(`{"a":"`))
		_, _ = zw.Write(bytes.Repeat([]byte("x"), MaxDecompressedBytes+10))
		_ = zw.Close()
		return base64.StdEncoding.EncodeToString(buf.Bytes())
	}()
	cases := []struct {
		name    string
		status  wfv1.WorkflowStatus
		storage Storage
		n       int
		err     string
	}{
		{"inline", wfv1.WorkflowStatus{Nodes: nodes}, Inline, 1, ""},
		{"compressed", wfv1.WorkflowStatus{CompressedNodes: packed}, Compressed, 1, ""},
		{"offloaded", wfv1.WorkflowStatus{OffloadNodeStatusVersion: "fnv:1"}, Offloaded, 0, ""},
		{"not base64", wfv1.WorkflowStatus{CompressedNodes: "%%%"}, Compressed, 0, "base64"},
		{"not gzip", wfv1.WorkflowStatus{CompressedNodes: base64.StdEncoding.EncodeToString([]byte("plain"))}, Compressed, 0, "gzip"},
		{"gzip bomb", wfv1.WorkflowStatus{CompressedNodes: bomb}, Compressed, 0, "inflates beyond"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			wf := &wfv1.Workflow{Status: c.status}
			wf.Namespace, wf.Name = "argo", "wf"
			got, storage, err := Nodes(wf)
			if storage != c.storage || len(got) != c.n {
				t.Errorf("got %d nodes in %s, want %d in %s", len(got), storage, c.n, c.storage)
			}
			if (err == nil) != (c.err == "") || (err != nil && (!strings.Contains(err.Error(), c.err) || !strings.Contains(err.Error(), "argo/wf"))) {
				t.Errorf("err = %v, want %q naming argo/wf", err, c.err)
			}
		})
	}
}

func TestGateHolds(t *testing.T) {
	f, tr := false, true
	cases := []struct {
		name   string
		status wfv1.WorkflowStatus
		want   bool
	}{
		{"map false", wfv1.WorkflowStatus{TaskResultsCompletionStatus: map[string]bool{"n": false}}, true},
		{"map true", wfv1.WorkflowStatus{TaskResultsCompletionStatus: map[string]bool{"n": true}}, false},
		{"map without the node", wfv1.WorkflowStatus{TaskResultsCompletionStatus: map[string]bool{"m": false}}, false},
		{"3.7 synced false", wfv1.WorkflowStatus{Nodes: wfv1.Nodes{"n": {TaskResultSynced: &f}}}, true},
		{"3.7 synced true", wfv1.WorkflowStatus{Nodes: wfv1.Nodes{"n": {TaskResultSynced: &tr}}}, false},
		{"pre-3.5.3 workflow", wfv1.WorkflowStatus{Nodes: wfv1.Nodes{"n": {}}}, false},
	}
	for _, c := range cases {
		wf := &wfv1.Workflow{Status: c.status}
		if got := GateHolds(wf, wf.Status.Nodes, "n"); got != c.want {
			t.Errorf("%s: GateHolds = %v, want %v", c.name, got, c.want)
		}
	}
}
