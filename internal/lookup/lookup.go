// Package lookup maps what a disruption names — an EC2 instance, a NodeClaim, a Node — to the
// workflow pods it affects.
package lookup

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
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
	"k8s.io/client-go/rest"

	"function/internal/argoworkflow"
)

// PageSize bounds every LIST of whole objects.
const PageSize = 500

// tablePageSize bounds a LIST of printed rows (a few hundred bytes each).
const tablePageSize = 5000

// NodeClaimGVR is Karpenter's NodeClaim (sigs.k8s.io/karpenter v1).
var NodeClaimGVR = schema.GroupVersionResource{Group: "karpenter.sh", Version: "v1", Resource: "nodeclaims"}

// KarpenterNodeLabel is on every Node Karpenter launched; its NodeClaim names its instance.
const KarpenterNodeLabel = "karpenter.sh/nodepool"

// Finder looks objects up. Dynamic and Tables may be nil: then NodeClaims are not read (by name,
// and for instance lookups, respectively).
type Finder struct {
	Kube    kubernetes.Interface
	Dynamic dynamic.Interface
	// Tables lists NodeClaims as the API server prints them, for the instance lookups.
	Tables TableLister
	// Instances, when set, answers instance lookups from a listing kept for a while instead of
	// listing per message.
	Instances *InstanceIndex
}

// TableLister lists a resource as the API server prints it: a meta.k8s.io Table of the columns its
// CRD declares, without the objects.
type TableLister interface {
	Table(ctx context.Context, gvr schema.GroupVersionResource, opts metav1.ListOptions) (*metav1.Table, error)
}

// RESTTables asks the API server for Tables through a REST client.
type RESTTables struct{ Client rest.Interface }

// Table lists one page of gvr's rows, served from the API server's watch cache when
// opts.ResourceVersion is "0".
func (t RESTTables) Table(ctx context.Context, gvr schema.GroupVersionResource, opts metav1.ListOptions) (*metav1.Table, error) {
	path := "/apis/" + gvr.Group + "/" + gvr.Version + "/" + gvr.Resource
	if gvr.Group == "" {
		path = "/api/" + gvr.Version + "/" + gvr.Resource
	}
	req := t.Client.Get().AbsPath(path).
		SetHeader("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io").
		Param("includeObject", string(metav1.IncludeNone))
	if opts.Limit > 0 {
		req = req.Param("limit", strconv.FormatInt(opts.Limit, 10))
	}
	for k, v := range map[string]string{"continue": opts.Continue, "resourceVersion": opts.ResourceVersion, "labelSelector": opts.LabelSelector} {
		if v != "" {
			req = req.Param(k, v)
		}
	}
	raw, err := req.Do(ctx).Raw()
	if err != nil {
		return nil, err
	}
	var table metav1.Table
	if err := json.Unmarshal(raw, &table); err != nil {
		return nil, fmt.Errorf("reading the %s table: %w", gvr.Resource, err)
	}
	if table.Kind != "Table" {
		return nil, fmt.Errorf("listing %s as a table: the API server answered a %q", gvr.Resource, table.Kind)
	}
	return &table, nil
}

// InstanceIndex maps EC2 instance IDs to the Nodes running them, from one listing reused for
// MaxAge. Karpenter's EventBridge rules deliver the state changes of every instance of the account
// and region, most of them not this cluster's. An instance whose Node appeared after the listing is
// missed until MaxAge has passed: that is doing nothing, and its Node's delete event still
// repairs. Safe for concurrent use; one listing at a time.
type InstanceIndex struct {
	MaxAge time.Duration
	Now    func() time.Time

	mu    sync.Mutex
	built time.Time
	nodes map[string][]string
}

// nodesOf returns the Nodes of the instances, listing the cluster only when the index is older
// than MaxAge.
func (x *InstanceIndex) nodesOf(ctx context.Context, f Finder, ids []string) ([]string, error) {
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

// NodesOfInstances returns the names of the Nodes running the instances (see scanInstances).
func (f Finder) NodesOfInstances(ctx context.Context, ids []string) ([]string, error) {
	if f.Instances != nil {
		return f.Instances.nodesOf(ctx, f, ids)
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

// scanInstances calls found for each instance ID → Node name the cluster shows. Karpenter's
// machines are read from the NodeClaims' printed rows (their Node and provider ID columns), which
// a NodeClaim keeps while its Node is being terminated; the other Nodes (those without Karpenter's
// label: node groups, hand-made) from their spec.providerID. No label or field selector carries
// the instance ID, so this costs one call per 5,000 NodeClaims and one per 500 Nodes Karpenter did
// not launch, however many it did.
func (f Finder) scanInstances(ctx context.Context, found func(id, node string)) error {
	opts := metav1.ListOptions{LabelSelector: "!" + KarpenterNodeLabel, Limit: PageSize}
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
	if f.Tables == nil {
		return nil
	}
	return f.scanClaims(ctx, found)
}

// scanClaims reads the NodeClaims' rows, a page at a time, from the watch cache.
func (f Finder) scanClaims(ctx context.Context, found func(id, node string)) error {
	opts := metav1.ListOptions{Limit: tablePageSize, ResourceVersion: "0"}
	for {
		table, err := f.Tables.Table(ctx, NodeClaimGVR, opts)
		if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
			return nil // Karpenter is not installed
		}
		if err != nil {
			return fmt.Errorf("listing nodeclaims: %w", err)
		}
		nodeCol, idCol := column(table, "Node"), column(table, "ID")
		if nodeCol < 0 || idCol < 0 {
			return fmt.Errorf("listing nodeclaims: the table has no Node or ID column (columns %v)", columnNames(table))
		}
		for _, row := range table.Rows {
			node, _ := cell(row, nodeCol).(string)
			pid, _ := cell(row, idCol).(string)
			if id := instanceOf(pid); id != "" && node != "" {
				found(id, node)
			}
		}
		if opts.Continue = table.Continue; opts.Continue == "" {
			return nil
		}
		opts.ResourceVersion = "" // a continuation carries its own
	}
}

func column(t *metav1.Table, name string) int {
	for i, c := range t.ColumnDefinitions {
		if c.Name == name {
			return i
		}
	}
	return -1
}

func columnNames(t *metav1.Table) []string {
	var out []string
	for _, c := range t.ColumnDefinitions {
		out = append(out, c.Name)
	}
	return out
}

func cell(row metav1.TableRow, i int) any {
	if i < len(row.Cells) {
		return row.Cells[i]
	}
	return nil
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

// ClaimGoing reports whether the NodeClaim of that name is gone or being deleted: Karpenter
// removes a NodeClaim only once its instance is terminated, and a NodeClaim being deleted is one
// whose machine it is terminating. node is the Node the NodeClaim names while it exists. Without
// Karpenter's API (or a dynamic client) nothing is proven: going is false.
func (f Finder) ClaimGoing(ctx context.Context, name string) (going bool, node string, err error) {
	if f.Dynamic == nil || name == "" {
		return false, "", nil
	}
	c, err := f.Dynamic.Resource(NodeClaimGVR).Get(ctx, name, metav1.GetOptions{})
	switch {
	case meta.IsNoMatchError(err):
		return false, "", nil
	case apierrors.IsNotFound(err):
		return true, "", nil
	case err != nil:
		return false, "", fmt.Errorf("reading nodeclaim %s: %w", name, err)
	}
	node, _, _ = unstructured.NestedString(c.Object, "status", "nodeName")
	return c.GetDeletionTimestamp() != nil, node, nil
}

// WorkflowPodsOn returns the workflow pods bound to node in the namespaces (none: all).
func (f Finder) WorkflowPodsOn(ctx context.Context, node string, namespaces []string) ([]corev1.Pod, error) {
	if len(namespaces) == 0 {
		namespaces = []string{metav1.NamespaceAll}
	}
	var out []corev1.Pod
	for _, ns := range namespaces {
		opts := metav1.ListOptions{FieldSelector: "spec.nodeName=" + node, LabelSelector: argoworkflow.LabelWorkflow, Limit: PageSize}
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
