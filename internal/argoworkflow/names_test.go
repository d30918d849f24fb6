package argoworkflow

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

func TestPodName(t *testing.T) {
	long := string(make([]byte, 250))
	for i := range []byte(long) {
		long = long[:i] + "w" + long[i+1:]
	}
	cases := []struct {
		name                           string
		wf, node, template, id, format string
		want                           string
	}{
		// argo v3.7.3 GeneratePodName("hello-xyz", "hello-xyz[0].step(0)", "whalesay", id, v2)
		{"v2", "hello-xyz", "hello-xyz[0].step(0)", "whalesay", NodeID("hello-xyz", "hello-xyz[0].step(0)"), "", "hello-xyz-whalesay" + NodeID("hello-xyz", "hello-xyz[0].step(0)")[len("hello-xyz"):]},
		{"v1", "hello-xyz", "hello-xyz[0].step(0)", "whalesay", "hello-xyz-123", "v1", "hello-xyz-123"},
		{"root node", "hello-xyz", "hello-xyz", "main", "hello-xyz", "v2", "hello-xyz"},
		{"no template name", "hello-xyz", "hello-xyz.a", "", NodeID("hello-xyz", "hello-xyz.a"), "v2", "hello-xyz" + NodeID("hello-xyz", "hello-xyz.a")[len("hello-xyz"):]},
		{"prefix cut at 242", long, long + ".a", "t", NodeID(long, long+".a"), "v2", long[:242] + NodeID(long, long+".a")[len(long):]},
	}
	for _, c := range cases {
		got := PodName(c.wf, c.node, c.template, c.id, c.format)
		if got != c.want {
			t.Errorf("%s: PodName = %q, want %q", c.name, got, c.want)
		}
		if !PodNameMatchesNode(got, c.wf, c.id) {
			t.Errorf("%s: %q does not match node %s", c.name, got, c.id)
		}
	}
}
