// Package lookup maps what a disruption names — an EC2 instance, a NodeClaim, a Node — to the
// workflow pods it affects.
package lookup

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"function/workflowmeta"
)

// PageSize bounds every LIST.
const PageSize = 500

// NodeClaimGVR is Karpenter's NodeClaim (sigs.k8s.io/karpenter v1).
var NodeClaimGVR = schema.GroupVersionResource{Group: "karpenter.sh", Version: "v1", Resource: "nodeclaims"}

// Finder looks objects up; Dynamic may be nil (then NodeClaims are not consulted).
type Finder struct {
	Kube    kubernetes.Interface
	Dynamic dynamic.Interface
	// Instances, when set, answers instance lookups from a listing kept for a while instead of
	// listing every Node and NodeClaim per message.
	Instances *InstanceIndex
}

// InstanceIndex maps EC2 instance IDs to the Nodes running them, from one listing of every Node
// and NodeClaim reused for MaxAge. Karpenter's EventBridge rules deliver the state changes of every
// instance of the account and region, most of them not this cluster's; listing the cluster for
// each would cost its size per message. An instance whose Node appeared after the listing is
// missed until MaxAge has passed: that is doing nothing, and its Node's delete event still
// repairs. Safe for concurrent use; one listing at a time.
type InstanceIndex struct {
	MaxAge time.Duration
	Now    func() time.Time

	mu    sync.Mutex
	built time.Time
	nodes map[string][]string
}

// NodesOf returns the Nodes of the instances, listing the cluster only when the index is older
// than MaxAge.
func (x *InstanceIndex) NodesOf(ctx context.Context, f Finder, ids []string) ([]string, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	now := time.Now
	if x.Now != nil {
		now = x.Now
	}
	if x.nodes == nil || now().Sub(x.built) >= x.MaxAge {
		built := now()
		nodes := map[string][]string{}
		err := f.scanInstances(ctx, func(id, node string) {
			if !slices.Contains(nodes[id], node) {
				nodes[id] = append(nodes[id], node)
			}
		})
		if err != nil {
			return nil, err
		}
		x.nodes, x.built = nodes, built
	}
	var out []string
	for _, id := range ids {
		for _, n := range x.nodes[id] {
			if !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
	}
	return out, nil
}

// instanceOf returns the EC2 instance ID of an AWS provider ID (aws:///<az>/<id>), or "".
func instanceOf(providerID string) string {
	if !strings.HasPrefix(providerID, "aws://") {
		return ""
	}
	return providerID[strings.LastIndexByte(providerID, '/')+1:]
}

// NodesOfInstances returns the names of the Nodes running the instances: Nodes whose
// spec.providerID names one (no label carries the instance ID), and NodeClaims' status.nodeName
// (a NodeClaim outlives its Node while Karpenter terminates it) when the CRD exists.
func (f Finder) NodesOfInstances(ctx context.Context, ids []string) ([]string, error) {
	if f.Instances != nil {
		return f.Instances.NodesOf(ctx, f, ids)
	}
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	var out []string
	err := f.scanInstances(ctx, func(id, node string) {
		if want[id] && !slices.Contains(out, node) {
			out = append(out, node)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("looking up instances %v: %w", ids, err)
	}
	return out, nil
}

// scanInstances lists every Node and NodeClaim a page at a time and calls found for each
// instance ID → Node name they show. Only one page is held at once.
func (f Finder) scanInstances(ctx context.Context, found func(id, node string)) error {
	opts := metav1.ListOptions{Limit: PageSize}
	for {
		nodes, err := f.Kube.CoreV1().Nodes().List(ctx, opts)
		if err != nil {
			return fmt.Errorf("listing nodes: %w", err)
		}
		for _, n := range nodes.Items {
			if id := instanceOf(n.Spec.ProviderID); id != "" {
				found(id, n.Name)
			}
		}
		if opts.Continue = nodes.Continue; opts.Continue == "" {
			break
		}
	}
	if f.Dynamic == nil {
		return nil
	}
	opts = metav1.ListOptions{Limit: PageSize}
	for {
		claims, err := f.Dynamic.Resource(NodeClaimGVR).List(ctx, opts)
		if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
			return nil // Karpenter is not installed
		}
		if err != nil {
			return fmt.Errorf("listing nodeclaims: %w", err)
		}
		for _, c := range claims.Items {
			pid, _, _ := unstructured.NestedString(c.Object, "status", "providerID")
			node, _, _ := unstructured.NestedString(c.Object, "status", "nodeName")
			if id := instanceOf(pid); id != "" && node != "" {
				found(id, node)
			}
		}
		if opts.Continue = claims.GetContinue(); opts.Continue == "" {
			return nil
		}
	}
}

// NodeOfClaim returns the Node name of a NodeClaim, "" when it has none or is gone.
func (f Finder) NodeOfClaim(ctx context.Context, name string) (string, error) {
	if f.Dynamic == nil {
		return "", nil
	}
	c, err := f.Dynamic.Resource(NodeClaimGVR).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("reading nodeclaim %s: %w", name, err)
	}
	node, _, _ := unstructured.NestedString(c.Object, "status", "nodeName")
	return node, nil
}

// WorkflowPodsOn returns the workflow pods bound to node in the namespaces (none: all).
func (f Finder) WorkflowPodsOn(ctx context.Context, node string, namespaces []string) ([]corev1.Pod, error) {
	if len(namespaces) == 0 {
		namespaces = []string{metav1.NamespaceAll}
	}
	var out []corev1.Pod
	for _, ns := range namespaces {
		opts := metav1.ListOptions{FieldSelector: "spec.nodeName=" + node, LabelSelector: workflowmeta.LabelWorkflow, Limit: PageSize}
		for {
			pods, err := f.Kube.CoreV1().Pods(ns).List(ctx, opts)
			if err != nil {
				return nil, fmt.Errorf("listing workflow pods on node %s: %w", node, err)
			}
			out = append(out, pods.Items...)
			if opts.Continue = pods.Continue; opts.Continue == "" {
				break
			}
		}
	}
	return out, nil
}
