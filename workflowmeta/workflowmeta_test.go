package workflowmeta

import "testing"

func TestNodeIDAndPodNames(t *testing.T) {
	// Node IDs and pod names as Argo v3.5–3.7 make them (util.GeneratePodName, Workflow.NodeID).
	if got := NodeID("nightly-etl-7k2xq", "nightly-etl-7k2xq"); got != "nightly-etl-7k2xq" {
		t.Errorf("root node ID = %s", got)
	}
	id := NodeID("hello-xyz", "hello-xyz[0].step(0)")
	suffix := id[len("hello-xyz"):]
	long := "a-very-long-workflow-name-that-goes-on-and-on-and-on-and-on-x1" // 63 bytes
	longID := NodeID(long, long+"[0].t")
	cases := []struct {
		pod, wf, node string
		want          bool
	}{
		{"hello-xyz-whalesay" + suffix, "hello-xyz", id, true},                   // v2 naming
		{id, "hello-xyz", id, true},                                              // v1 naming
		{"hello-xyz-whalesay-1234", "hello-xyz", id, false},                      // other hash
		{"other-wf-whalesay" + suffix, "hello-xyz", id, false},                   // other workflow
		{"hello-xyz", "hello-xyz", "hello-xyz", true},                            // single-pod workflow
		{long[:62] + longID[len(long):], long, longID, true},                     // truncated prefix
		{"hello-xyz-whalesay" + suffix, "hello-xyz", "hello-xy" + suffix, false}, // node of another wf
		{"nohash", "hello-xyz", id, false},
	}
	for _, c := range cases {
		if got := PodNameMatchesNode(c.pod, c.wf, c.node); got != c.want {
			t.Errorf("PodNameMatchesNode(%q, %q, %q) = %v, want %v", c.pod, c.wf, c.node, got, c.want)
		}
	}
}
