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
