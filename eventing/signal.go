// Package eventing turns CloudEvents into Signals: what happened, to which object, independent of
// the source and envelope that carried it. One Decoder per event family lives in its own
// sub-package and registers itself in a Registry keyed by CloudEvent type (and, for the Knative
// ApiServerSource, the "kind" extension), the way Karpenter keeps one parser per interruption
// message kind.
package eventing

import (
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Signal is what one event tells the handlers. It is one of the types below.
type Signal interface{ signal() }

// Ignore is a well-formed event that needs no action. It is answered 200 with no API call.
type Ignore struct {
	// Reason is logged at debug level.
	Reason string
}

// Op is what happened to an object.
type Op string

// The operations an ApiServerSource reports.
const (
	OpAdd    Op = "add"
	OpUpdate Op = "update"
	OpDelete Op = "delete"
)

// PodChange says that a workflow pod changed or disappeared.
type PodChange struct {
	Op        Op
	Namespace string
	Name      string
	// Pod is the object as the watch delivered it (Resource mode), or nil when the event carried
	// only a reference (Reference mode): the handler then reads the pod from the API.
	Pod *corev1.Pod
	// Seen is when the event was produced (the CloudEvent time: send time, not change time).
	Seen time.Time
}

func (Ignore) signal()     {}
func (*PodChange) signal() {}

// NodeGone says that a Kubernetes Node, or the Karpenter NodeClaim behind one, was deleted: every
// workflow pod still bound to it can never report again, even if no pod event ever arrives (a pod
// held Terminating by a finalizer on a vanished Node produces none).
type NodeGone struct {
	// Kind is "Node" or "NodeClaim".
	Kind string
	// NodeName is the Node's name (for a NodeClaim, its status.nodeName; "" when it never
	// registered a Node).
	NodeName string
	// ProviderID is the cloud instance, e.g. aws:///eu-west-1a/i-0abc123 ("" when unknown).
	ProviderID string
	// Machine is what the delete claims about the machine: MachineTerminated for a NodeClaim
	// (its finalizer waits for the instance) or a Node Karpenter manages (its finalizer is removed
	// after the instance is terminated); MachineUnknown for a plain Node delete, which a live
	// kubelet undoes by registering again.
	Machine Machine
	// Claim is the NodeClaim behind the Node (the deleted NodeClaim, or the Node's owner), ""
	// when the event names none: what the handler reads to confirm the machine is going.
	Claim string
	Seen  time.Time
}

// Machine is what a signal claims about the machine behind a Node. It is a claim, never a
// proof: the repair acts on it only once the API server confirms that the Node is gone, because
// an event may be late, about an earlier Node of the same name, or forged.
type Machine int

// What a signal can claim about a machine. The states on the way (shutting down, stopping) are
// not claimed: the message that follows them claims the end.
const (
	// MachineUnknown: the signal says nothing about the machine.
	MachineUnknown Machine = iota
	// MachineTerminated: the instance is terminated or stopped; none of its pods' containers
	// runs any more.
	MachineTerminated
)

func (m Machine) String() string {
	if m == MachineTerminated {
		return "terminated"
	}
	return "unknown"
}

func (*NodeGone) signal() {}

// Disruption is a reason for pods to go away, announced by Karpenter or the cloud: it names the
// pod, Node, NodeClaim or instances it is about. The handler records it where users look, and
// when it claims the machine is stopping or terminated, runs the repair for the pods that were
// on it (which acts only where the API server confirms their Node is gone).
type Disruption struct {
	// Source is who said it: "karpenter", "aws.ec2", "aws.health".
	Source string
	// Reason is short and stable (the Karpenter Event reason, or the EC2 message kind), Message
	// the human text.
	Reason, Message string
	// What it is about: one pod, a Node, a NodeClaim, or EC2 instances.
	PodNamespace, PodName string
	NodeName              string
	NodeClaimName         string
	InstanceIDs           []string
	// Machine is what the message claims about the instance (EC2 state changes); MachineUnknown
	// for a warning of a disruption still to come.
	Machine Machine
	Seen    time.Time
}

func (*Disruption) signal() {}

// Sweep asks for the safety-net scan of Running workflows (a PingSource tick): it finds what the
// event path missed (an event dropped by the adapter, a watch that was down).
type Sweep struct {
	Source string
	Seen   time.Time
}

func (*Sweep) signal() {}
