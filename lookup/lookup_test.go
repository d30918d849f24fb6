package lookup

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"

	"function/apifake"
)

func awsNode(name, instance string) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.NodeSpec{ProviderID: "aws:///eu-west-1a/" + instance}}
}

// EC2 messages for instances of the whole account: the index lists the cluster once per MaxAge
// and answers the rest, known instance or not, without a call.
func TestInstanceIndex(t *testing.T) {
	var objs []runtime.Object
	for i := range 1200 {
		objs = append(objs, awsNode(fmt.Sprintf("ip-10-0-%d-%d.eu-west-1.compute.internal", i/250, i%250), fmt.Sprintf("i-0%016x", i)))
	}
	kube := apifake.NewCluster(objs...).Kube
	lists := 0
	kube.PrependReactor("list", "nodes", func(k8stesting.Action) (bool, runtime.Object, error) { lists++; return false, nil, nil })
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	idx := &InstanceIndex{MaxAge: 30 * time.Second, Now: func() time.Time { return at }}
	f := Finder{Kube: kube, Instances: idx}
	ctx := context.Background()
	steps := []struct {
		name      string
		advance   time.Duration
		add       *corev1.Node
		ids       []string
		want      []string
		wantLists int
	}{
		{"first message: the cluster is listed", 0, nil, []string{"i-0000000000000002a"}, []string{"ip-10-0-0-42.eu-west-1.compute.internal"}, 1},
		{"another account instance: no call", time.Second, nil, []string{"i-0ffffffffffffffff"}, nil, 1},
		{"a known one again: no call", 10 * time.Second, nil, []string{"i-000000000000004af"}, []string{"ip-10-0-4-199.eu-west-1.compute.internal"}, 1},
		{"a Node created since: not seen before MaxAge", 5 * time.Second, awsNode("new-node", "i-0aaaaaaaaaaaaaaaa"), []string{"i-0aaaaaaaaaaaaaaaa"}, nil, 1},
		{"past MaxAge: listed again, and found", 20 * time.Second, nil, []string{"i-0aaaaaaaaaaaaaaaa"}, []string{"new-node"}, 2},
	}
	for _, s := range steps {
		at = at.Add(s.advance)
		if s.add != nil {
			if err := kube.Tracker().Add(s.add); err != nil {
				t.Fatal(err)
			}
		}
		got, err := f.NodesOfInstances(ctx, s.ids)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if !slices.Equal(got, s.want) || lists != s.wantLists {
			t.Errorf("%s: nodes %v after %d listings, want %v after %d", s.name, got, lists, s.want, s.wantLists)
		}
	}
	// Without the index every message lists the cluster.
	plain := Finder{Kube: kube}
	before := lists
	if got, err := plain.NodesOfInstances(ctx, []string{"i-0ffffffffffffffff"}); err != nil || got != nil || lists != before+1 {
		t.Errorf("without the index: %v %v after %d listings", got, err, lists-before)
	}
}
