package localcluster

import (
	"context"
	_ "embed"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

//go:embed crds/karpenter.sh_nodeclaims.yaml
var nodeClaimCRD []byte

var nodeClaimGVR = schema.GroupVersionResource{Group: "karpenter.sh", Version: "v1", Resource: "nodeclaims"}

// InstallNodeClaimCRD installs Karpenter's own NodeClaim CRD (v1.14.1: its schema, its status
// subresource and the columns the API server prints), for the lookups that read NodeClaims.
func (c *Cluster) InstallNodeClaimCRD(ctx context.Context) error {
	return c.createCRDs(ctx, [][]byte{nodeClaimCRD})
}

// CreateNodeClaim creates a NodeClaim as Karpenter leaves it once its machine registered: the
// provider ID and the Node name in its status.
func (c *Cluster) CreateNodeClaim(ctx context.Context, name, providerID, nodeName string) error {
	claim := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "karpenter.sh/v1", "kind": "NodeClaim",
		"metadata": map[string]any{"name": name, "labels": map[string]any{"karpenter.sh/nodepool": "workflows"}},
		"spec": map[string]any{
			"nodeClassRef": map[string]any{"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"},
			"requirements": []any{map[string]any{"key": "karpenter.sh/capacity-type", "operator": "In", "values": []any{"spot"}}},
		}}}
	created, err := c.dyn.Resource(nodeClaimGVR).Create(ctx, claim, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("creating nodeclaim %s: %w", name, err)
	}
	created.Object["status"] = map[string]any{"providerID": providerID, "nodeName": nodeName}
	if _, err := c.dyn.Resource(nodeClaimGVR).UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("writing the status of nodeclaim %s: %w", name, err)
	}
	return nil
}
