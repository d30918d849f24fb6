// Package karpenterevent decodes Kubernetes Events recorded by Karpenter (component "karpenter",
// sigs.k8s.io/karpenter v1.x and karpenter-provider-aws), as a Knative ApiServerSource delivers
// them in Resource mode (kind Event). Events about Pods are recorded in the pod's namespace, about
// Nodes and NodeClaims in "default": the ApiServerSource must watch both.
package karpenterevent

import (
	"encoding/json"
	"strings"

	"github.com/cloudevents/sdk-go/v2/event"
	corev1 "k8s.io/api/core/v1"

	"function/eventing"
)

// Component is the event source component Karpenter records with.
const Component = "karpenter"

// Reasons Karpenter records on Pods.
var podReasons = map[string]bool{
	// "Evicted pod: <Underutilized|Empty|Drifted|Unhealthy>" or "Evicted pod: Forceful Termination".
	"Evicted": true,
	// Force-deleted at the node's termination deadline (bypasses PDBs and do-not-disrupt).
	"Disrupted": true,
}

// Reasons Karpenter (core and the AWS provider) records on Nodes and NodeClaims.
var nodeReasons = map[string]bool{
	"DisruptionTerminating":                  true, // "Disrupting Node: Underutilized"
	"SpotInterrupted":                        true,
	"SpotRebalanceRecommendation":            true,
	"InstanceTerminating":                    true,
	"InstanceStopping":                       true,
	"InstanceUnhealthy":                      true,
	"TerminatingOnInterruption":              true,
	"CapacityReservationInstanceInterrupted": true,
	// v1.15 node reboot (a repair action): the NodeClaim's Node came back with a new boot ID; the
	// pods that stayed through the drain lost their containers.
	"RebootObserved": true,
}

// Decoder decodes v1 Events.
type Decoder struct{}

// Register adds the decoder for Events added or updated (Karpenter's recorder de-duplicates for
// two minutes by updating the count).
func Register(r *eventing.Registry) {
	r.Register(eventing.ResourceAdd, "Event", Decoder{})
	r.Register(eventing.ResourceUpdate, "Event", Decoder{})
}

// Decode implements eventing.Decoder.
func (Decoder) Decode(e event.Event) (eventing.Signal, error) {
	data, err := eventing.JSONData(e)
	if err != nil {
		return nil, err
	}
	if err := eventing.CheckObjects(e, data); err != nil {
		return nil, err
	}
	var ev corev1.Event
	if err := json.Unmarshal(data, &ev); err != nil {
		return nil, eventing.Malformed(e, "data is not an Event: %v", err)
	}
	if ev.Source.Component != Component && ev.ReportingController != Component {
		return eventing.Ignore{Reason: "event not from karpenter"}, nil
	}
	obj := ev.InvolvedObject
	d := &eventing.Disruption{Source: Component, Reason: ev.Reason, Message: ev.Message, Seen: e.Time()}
	switch {
	case obj.Kind == "Pod" && podReasons[ev.Reason]:
		d.PodNamespace, d.PodName = obj.Namespace, obj.Name
	case obj.Kind == "Node" && nodeReasons[ev.Reason]:
		d.NodeName = obj.Name
	case obj.Kind == "NodeClaim" && nodeReasons[ev.Reason]:
		d.NodeClaimName = obj.Name
	default:
		return eventing.Ignore{Reason: "karpenter event " + ev.Reason + " on " + obj.Kind + " is informative"}, nil
	}
	if obj.Name == "" || (obj.Kind == "Pod" && obj.Namespace == "") {
		return nil, eventing.Malformed(e, "event %s/%s names no object", ev.Namespace, ev.Name)
	}
	d.Message = strings.TrimSpace(d.Message)
	return d, nil
}
