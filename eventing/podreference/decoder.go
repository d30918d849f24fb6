// Package podreference decodes Knative ApiServerSource events in Reference mode for Pods
// (dev.knative.apiserver.ref.{add,update,delete}): the data is only {apiVersion, kind, name,
// namespace} — no labels, uid or resourceVersion — so the handler reads the pod itself.
package podreference

import (
	"encoding/json"
	"strings"

	"github.com/cloudevents/sdk-go/v2/event"
	"k8s.io/apimachinery/pkg/util/validation"

	"function/eventing"
)

// reference is the Reference-mode payload (knative.dev/eventing pkg/adapter/apiserver/events).
type reference struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Name       string `json:"name"`
	Namespace  string `json:"namespace"`
}

// Decoder decodes Pod references.
type Decoder struct{}

// Register adds the decoder for the three Reference-mode types, kind Pod.
func Register(r *eventing.Registry) {
	for _, t := range []string{eventing.RefAdd, eventing.RefUpdate, eventing.RefDelete} {
		r.Register(t, "Pod", Decoder{})
	}
}

// Decode implements eventing.Decoder.
func (Decoder) Decode(e event.Event) (eventing.Signal, error) {
	op, data, err := eventing.PodOp(e)
	if err != nil {
		return nil, err
	}
	var ref reference
	if err := json.Unmarshal(data, &ref); err != nil {
		return nil, eventing.Malformed(e, "data is not an object reference: %v", err)
	}
	if ref.Kind != "Pod" {
		return nil, eventing.Malformed(e, "reference is to a %q, not a Pod", ref.Kind)
	}
	if msgs := validation.IsDNS1123Subdomain(ref.Name); len(msgs) > 0 {
		return nil, eventing.Malformed(e, "pod name %q: %s", ref.Name, strings.Join(msgs, "; "))
	}
	if msgs := validation.IsDNS1123Label(ref.Namespace); len(msgs) > 0 {
		return nil, eventing.Malformed(e, "namespace %q: %s", ref.Namespace, strings.Join(msgs, "; "))
	}
	return &eventing.PodChange{Op: op, Namespace: ref.Namespace, Name: ref.Name, Seen: e.Time()}, nil
}
