// A workflow's node statuses, read wherever Argo keeps them, and whether the workflow's
// WorkflowTaskResult completion gate is holding a node.

package argoworkflow

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
)

// Storage is where a workflow's nodes live.
type Storage string

const (
	// Inline nodes are in status.nodes: the only storage whose nodes we may write.
	Inline Storage = "inline"
	// Compressed nodes are in status.compressedNodes (base64 of gzip of the JSON map), used once
	// the object passes ~1 MiB. A merge patch adding one node to status.nodes would make the
	// controller drop all the others: never write them.
	Compressed Storage = "compressed"
	// Offloaded nodes are in Argo's SQL database (status.offloadNodeStatusVersion), readable
	// only through Argo Server: not written, not read.
	Offloaded Storage = "offloaded"
)

// MaxDecompressedBytes bounds what a compressed node map may inflate to. Argo compresses at
// ~1 MiB of object; a 64 MiB bound leaves room for huge workflows and stops a gzip bomb.
const MaxDecompressedBytes = 64 << 20

// Nodes returns the workflow's nodes and where they were found. Offloaded workflows return nil
// nodes. An error means compressedNodes could not be read.
func Nodes(wf *wfv1.Workflow) (wfv1.Nodes, Storage, error) {
	switch {
	case wf.Status.IsOffloadNodeStatus():
		return nil, Offloaded, nil
	case len(wf.Status.Nodes) == 0 && wf.Status.CompressedNodes != "":
		nodes, err := decompress(wf.Status.CompressedNodes)
		if err != nil {
			return nil, Compressed, fmt.Errorf("workflow %s/%s: reading status.compressedNodes: %w", wf.Namespace, wf.Name, err)
		}
		return nodes, Compressed, nil
	default:
		return wf.Status.Nodes, Inline, nil
	}
}

func decompress(encoded string) (wfv1.Nodes, error) {
	raw, err := base64.StdEncoding.DecodeString(encoded)
	if err != nil {
		return nil, fmt.Errorf("base64: %w", err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("gzip: %w", err)
	}
	defer zr.Close()
	plain, err := io.ReadAll(io.LimitReader(zr, MaxDecompressedBytes+1))
	if err != nil {
		return nil, fmt.Errorf("gzip: %w", err)
	}
	if len(plain) > MaxDecompressedBytes {
		return nil, fmt.Errorf("inflates beyond %d bytes", MaxDecompressedBytes)
	}
	var nodes wfv1.Nodes
	if err := json.Unmarshal(plain, &nodes); err != nil {
		return nil, fmt.Errorf("json: %w", err)
	}
	return nodes, nil
}

// Compress encodes nodes the way Argo's packer does (for tests and fixtures).
func Compress(nodes wfv1.Nodes) (string, error) {
	plain, err := json.Marshal(nodes)
	if err != nil {
		return "", err
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(plain); err != nil {
		return "", err
	}
	if err := zw.Close(); err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(buf.Bytes()), nil
}

// GateHolds reports whether the workflow's completion gate waits on the task result of nodeID:
// status.taskResultsCompletionStatus[nodeID] == false (v3.5.3+), or, for v3.7.1+ workflows
// without that map, the node's taskResultSynced == false. The second needs the nodes; pass nil
// when they are not readable (offloaded), and the answer then relies on the map alone.
func GateHolds(wf *wfv1.Workflow, nodes wfv1.Nodes, nodeID string) bool {
	if done, found := wf.Status.TaskResultsCompletionStatus[nodeID]; found {
		return !done
	}
	if n, ok := nodes[nodeID]; ok && n.TaskResultSynced != nil {
		return !*n.TaskResultSynced
	}
	return false
}
