package lookup

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	k8stesting "k8s.io/client-go/testing"

	"function/internal/apifake"
)

// awsNode is a Node of instance; launched by Karpenter when it carries its label.
func awsNode(name, instance string, karpenter bool) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.NodeSpec{ProviderID: "aws:///eu-west-1a/" + instance}}
	if karpenter {
		n.Labels = map[string]string{KarpenterNodeLabel: "workflows"}
	}
	return n
}

// cluster holds n Karpenter machines (Node + NodeClaim each) and groupNodes Nodes of a node group.
func cluster(n, groupNodes int) *apifake.Cluster {
	var objs []runtime.Object
	var claims []apifake.NodeClaim
	for i := range n {
		name, instance := fmt.Sprintf("ip-10-0-%d-%d.eu-west-1.compute.internal", i/250, i%250), fmt.Sprintf("i-0%016x", i)
		objs = append(objs, awsNode(name, instance, true))
		claims = append(claims, apifake.NodeClaim{Name: fmt.Sprintf("workflows-%05d", i), ProviderID: "aws:///eu-west-1a/" + instance, NodeName: name})
	}
	for i := range groupNodes {
		objs = append(objs, awsNode(fmt.Sprintf("ip-10-1-0-%d.eu-west-1.compute.internal", i), fmt.Sprintf("i-0ee%014x", i), false))
	}
	c := apifake.NewCluster(objs...)
	c.AddNodeClaims(claims...)
	return c
}

// An instance is looked up through the NodeClaims' printed rows and the Nodes Karpenter did not
// launch: the cost does not grow with Karpenter's Nodes, and a Node of a node group is still found.
func TestNodesOfInstances(t *testing.T) {
	for _, tc := range []struct {
		name      string
		karpenter int
		group     int
		ids       []string
		want      []string
		maxCalls  int
	}{
		{"instance of no Node, 6,000 Karpenter machines", 6000, 0, []string{"i-0ffffffffffffffff"}, nil, 3},
		{"instance of no Node, 2,000 Karpenter machines, 3 node-group Nodes", 2000, 3, []string{"i-0ffffffffffffffff"}, nil, 2},
		{"a Karpenter machine", 2000, 3, []string{"i-000000000000004af"}, []string{"ip-10-0-4-199.eu-west-1.compute.internal"}, 2},
		{"a node group's Node", 2000, 3, []string{"i-0ee00000000000002"}, []string{"ip-10-1-0-2.eu-west-1.compute.internal"}, 2},
		{"both, one message", 10, 3, []string{"i-00000000000000001", "i-0ee00000000000000"}, []string{"ip-10-0-0-1.eu-west-1.compute.internal", "ip-10-1-0-0.eu-west-1.compute.internal"}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := cluster(tc.karpenter, tc.group)
			read := nodesRead(c)
			f := Finder{Kube: c.Kube, Tables: RESTTables{Client: c.REST()}}
			got, err := f.NodesOfInstances(context.Background(), tc.ids)
			if err != nil {
				t.Fatal(err)
			}
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Errorf("nodes %v, want %v", got, tc.want)
			}
			if n := c.Count(""); n > tc.maxCalls {
				t.Errorf("%d API calls %v, want at most %d", n, c.Calls(), tc.maxCalls)
			}
			if *read > tc.group {
				t.Errorf("%d Nodes read, want only the %d Karpenter did not launch", *read, tc.group)
			}
		})
	}
}

// nodesRead counts the Nodes the Cluster's Node LISTs return (the fake ignores limits, so the
// calls alone do not show what a listing costs).
func nodesRead(c *apifake.Cluster) *int {
	read := 0
	c.Kube.PrependReactor("list", "nodes", func(a k8stesting.Action) (bool, runtime.Object, error) {
		sel := a.(k8stesting.ListAction).GetListRestrictions().Labels
		all, err := c.Kube.Tracker().List(corev1.SchemeGroupVersion.WithResource("nodes"), corev1.SchemeGroupVersion.WithKind("Node"), "")
		if err == nil {
			for _, n := range all.(*corev1.NodeList).Items {
				if sel.Matches(labels.Set(n.Labels)) {
					read++
				}
			}
		}
		return false, nil, nil
	})
	return &read
}

// A NodeClaim listing that fails is an error (the event is retried), and a cluster without
// Karpenter (no NodeClaim resource) answers from the Nodes alone.
func TestNodesOfInstancesErrors(t *testing.T) {
	ctx := context.Background()
	c := cluster(5, 1)
	f := Finder{Kube: c.Kube, Tables: RESTTables{Client: c.REST()}}
	c.FailNext("list nodeclaims", errors.New("etcd timeout"))
	if _, err := f.NodesOfInstances(ctx, []string{"i-00000000000000001"}); err == nil {
		t.Error("a failed NodeClaim listing was not reported")
	}
	noKarpenter := Finder{Kube: c.Kube, Tables: missingResource{}}
	got, err := noKarpenter.NodesOfInstances(ctx, []string{"i-0ee00000000000000"})
	if err != nil || !slices.Equal(got, []string{"ip-10-1-0-0.eu-west-1.compute.internal"}) {
		t.Errorf("without Karpenter: %v %v", got, err)
	}
}

// missingResource answers like an API server without Karpenter's CRD.
type missingResource struct{}

func (missingResource) Table(ctx context.Context, _ schema.GroupVersionResource, _ metav1.ListOptions) (*metav1.Table, error) {
	return RESTTables{Client: apifake.NewCluster().REST()}.Table(ctx, schema.GroupVersionResource{Resource: "nodeclaims-not-installed"}, metav1.ListOptions{})
}

// EC2 messages for instances of the whole account: the index lists the cluster once per MaxAge
// and answers the rest, known instance or not, without a call.
func TestInstanceIndex(t *testing.T) {
	c := cluster(1200, 0)
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	idx := &InstanceIndex{MaxAge: 30 * time.Second, Now: func() time.Time { return at }}
	f := Finder{Kube: c.Kube, Tables: RESTTables{Client: c.REST()}, Instances: idx}
	ctx := context.Background()
	steps := []struct {
		name      string
		advance   time.Duration
		add       *apifake.NodeClaim
		ids       []string
		want      []string
		wantCalls int
	}{
		{"first message: the cluster is listed", 0, nil, []string{"i-0000000000000002a"}, []string{"ip-10-0-0-42.eu-west-1.compute.internal"}, 2},
		{"another account instance: no call", time.Second, nil, []string{"i-0ffffffffffffffff"}, nil, 2},
		{"a known one again: no call", 10 * time.Second, nil, []string{"i-000000000000004af"}, []string{"ip-10-0-4-199.eu-west-1.compute.internal"}, 2},
		{"a machine launched since: not seen before MaxAge", 5 * time.Second, &apifake.NodeClaim{Name: "workflows-new", ProviderID: "aws:///eu-west-1a/i-0aaaaaaaaaaaaaaaa", NodeName: "new-node"}, []string{"i-0aaaaaaaaaaaaaaaa"}, nil, 2},
		{"past MaxAge: listed again, and found", 20 * time.Second, nil, []string{"i-0aaaaaaaaaaaaaaaa"}, []string{"new-node"}, 4},
	}
	for _, s := range steps {
		at = at.Add(s.advance)
		if s.add != nil {
			c.AddNodeClaims(*s.add)
		}
		got, err := f.NodesOfInstances(ctx, s.ids)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if !slices.Equal(got, s.want) || c.Count("") != s.wantCalls {
			t.Errorf("%s: nodes %v after %d calls, want %v after %d", s.name, got, c.Count(""), s.want, s.wantCalls)
		}
	}
}
