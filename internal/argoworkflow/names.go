// Package argoworkflow is what the function knows of Argo Workflows' objects. It names the labels,
// annotations and finalizers through which Argo links pods, task results and workflows
// (argo-workflows workflow/common/common.go) and the ones this function writes, the names Argo
// gives a node's pod, and reads a workflow's node statuses wherever Argo keeps them. It imports
// nothing from Argo's controller packages, whose dependency tree (SQL drivers, cgo sqlite) a
// function should not carry.
package argoworkflow

import (
	"fmt"
	"hash/fnv"
	"strings"
)

// Argo's own keys.
const (
	// LabelWorkflow is on every workflow pod and task result: the workflow's name.
	LabelWorkflow = "workflows.argoproj.io/workflow"
	// LabelInstanceID is on workflows, pods and task results when the controller has an instanceID.
	LabelInstanceID = "workflows.argoproj.io/controller-instanceid"
	// LabelReportOutputsCompleted is on WorkflowTaskResults: "false" while the wait container may
	// still report, "true" once it has (v3.5.3+). A "false" blocks the workflow's completion.
	LabelReportOutputsCompleted = "workflows.argoproj.io/report-outputs-completed"
	// LabelCompleted is on workflows and pods once done. We never write it (controller ignores a
	// workflow labelled so, for ever).
	LabelCompleted = "workflows.argoproj.io/completed"
	// AnnotationLastSeenVersion is Argo 4's record, on a workflow, of the resourceVersion its own
	// last update started from. We never write it: a value it did not write makes the controller
	// skip the workflow as outdated.
	AnnotationLastSeenVersion = "workflows.argoproj.io/last-seen-version"
	// LabelPhase mirrors a workflow's phase, for list filtering.
	LabelPhase = "workflows.argoproj.io/phase"
	// AnnotationNodeID is on workflow pods: the ID of the node the pod runs.
	AnnotationNodeID = "workflows.argoproj.io/node-id"
	// AnnotationNodeName is on workflow pods: the node's name (node ID = <wf>-fnv32a(name)).
	AnnotationNodeName = "workflows.argoproj.io/node-name"
	// FinalizerStatus is the pod finalizer added with ARGO_POD_STATUS_CAPTURE_FINALIZER=true
	// (v3.6.0+). Before 3.6.16 / 3.7.7 it can hold a pod of a vanished Node Terminating until the
	// workflow ends, which it never does while the task result is incomplete.
	FinalizerStatus = "workflows.argoproj.io/status"
	// AnnotationPodNameFormat is on a workflow: "v1" (pod name = node ID) or "v2"
	// ("<wf>-<template>-<hash>"), set by the controller when it first runs it.
	AnnotationPodNameFormat = "workflows.argoproj.io/pod-name-format"
	// WaitContainer is the name of Argo's sidecar that creates and completes the task result.
	WaitContainer = "wait"
)

// Keys this function writes.
const (
	// Domain prefixes every key we own.
	Domain = "argo-disruption-handler.dev"
	// AnnotationDisruptionPrefix starts the Workflow annotations that record our repairs, one per
	// node: <prefix><the node ID's hash suffix> → Record JSON (repair.AnnotationKey).
	AnnotationDisruptionPrefix = Domain + "/disruption."
	// LabelRepaired is on a task result we completed (value: the ladder step), set in the same
	// patch: the proof from which a re-delivered event finishes a record a crash interrupted.
	LabelRepaired = Domain + "/repaired"
	// AnnotationRepaired is on an object we repaired (task result, pod), written in the same
	// patch as the repair: the proof from which a re-delivered event finishes recording.
	AnnotationRepaired = Domain + "/repaired"
	// AnnotationWarning is on a pod: the disruption announced for it (repair.Warning JSON).
	AnnotationWarning = Domain + "/disruption-warning"
	// AnnotationWarnings is on a Workflow: JSON object, pod name → repair.Warning.
	AnnotationWarnings = Domain + "/warnings"
	// Component is the Kubernetes Event source component and field manager.
	Component = "argo-disruption-handler"
)

// NodeID computes Argo's node ID from the workflow and node names (Workflow.NodeID in
// pkg/apis/workflow/v1alpha1): the workflow name for the root node, else
// "<workflow>-<fnv32a(nodeName)>" in decimal.
func NodeID(workflow, nodeName string) string {
	if nodeName == workflow {
		return workflow
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(nodeName))
	return fmt.Sprintf("%s-%d", workflow, h.Sum32())
}

// PodNameMatchesNode reports whether a pod name can be the pod of the node with this ID in this
// workflow, for either pod-naming scheme: v1 (pod name = node ID) or v2
// ("<wf>-<template>-<fnv32a(nodeName)>", prefix truncated to fit; the hash is the node ID's
// suffix). Used when a pod is gone and only its name is known (Reference-mode delete).
func PodNameMatchesNode(podName, workflow, nodeID string) bool {
	if podName == nodeID {
		return true
	}
	i := strings.LastIndexByte(podName, '-')
	j := strings.LastIndexByte(nodeID, '-')
	if i <= 0 || j <= 0 || podName[i:] != nodeID[j:] || nodeID[:j] != workflow {
		return false
	}
	prefix := podName[:i]
	// The v2 prefix is "<wf>-<template>", cut at 62 bytes (ensurePodNamePrefixLength), so either
	// it starts with the workflow name or the workflow name starts with it.
	return strings.HasPrefix(prefix, workflow) || strings.HasPrefix(workflow, prefix)
}

// maxPodNamePrefix is Argo's v2 pod-name prefix bound (workflow/util/pod_name.go in v3.7:
// 253-10, minus the dash).
const maxPodNamePrefix = 253 - 10 - 1

// PodName computes the name of the pod the controller creates for a node (GeneratePodName in
// argo-workflows workflow/util): the node ID with the v1 format, else
// "<wf>-<template>-<fnv32a(nodeName)>" with the prefix cut at 242 bytes, and the workflow name
// for a root node. Used when the pod is gone and only the workflow's node status is known (the
// sweep); PodNameMatchesNode tolerates the shorter cut of older controllers.
func PodName(workflow, nodeName, templateName, nodeID, format string) string {
	if format == "v1" {
		return nodeID
	}
	if workflow == nodeName {
		return workflow
	}
	prefix := workflow
	if templateName != "" {
		prefix += "-" + templateName
	}
	if len(prefix) > maxPodNamePrefix {
		prefix = prefix[:maxPodNamePrefix]
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(nodeName))
	return fmt.Sprintf("%s-%d", prefix, h.Sum32())
}
