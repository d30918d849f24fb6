// Package lookup maps what a disruption names — an EC2 instance, a NodeClaim, a Node — to the
// workflow pods it affects.
package lookup

import (
	"context"
	"fmt"
	"strings"

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
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	found := map[string]bool{}
	opts := metav1.ListOptions{Limit: PageSize}
	for {
		nodes, err := f.Kube.CoreV1().Nodes().List(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("listing nodes for instances %v: %w", ids, err)
		}
		for _, n := range nodes.Items {
			if want[instanceOf(n.Spec.ProviderID)] {
				found[n.Name] = true
			}
		}
		if opts.Continue = nodes.Continue; opts.Continue == "" {
			break
		}
	}
	if f.Dynamic != nil {
		opts = metav1.ListOptions{Limit: PageSize}
		for {
			claims, err := f.Dynamic.Resource(NodeClaimGVR).List(ctx, opts)
			if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
				break // Karpenter is not installed
			}
			if err != nil {
				return nil, fmt.Errorf("listing nodeclaims for instances %v: %w", ids, err)
			}
			for _, c := range claims.Items {
				pid, _, _ := unstructured.NestedString(c.Object, "status", "providerID")
				node, _, _ := unstructured.NestedString(c.Object, "status", "nodeName")
				if want[instanceOf(pid)] && node != "" {
					found[node] = true
				}
			}
			if opts.Continue = claims.GetContinue(); opts.Continue == "" {
				break
			}
		}
	}
	out := make([]string, 0, len(found))
	for n := range found {
		out = append(out, n)
	}
	return out, nil
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
