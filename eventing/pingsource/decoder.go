// Package pingsource decodes the Knative PingSource CloudEvent (dev.knative.sources.ping) that
// drives the safety-net sweep. Its data is whatever the PingSource's spec.data says; the sweep
// needs none of it, so any data (or none) is accepted and never parsed: a ping cannot be
// malformed in a way that matters, and hostile data costs nothing.
package pingsource

import (
	"github.com/cloudevents/sdk-go/v2/event"

	"function/eventing"
)

// Type is the CloudEvent type of every PingSource event
// (knative.dev/eventing pkg/apis/sources/v1 PingSourceEventType).
const Type = "dev.knative.sources.ping"

// Decoder turns a ping into a Sweep.
type Decoder struct{}

// Register adds the decoder.
func Register(r *eventing.Registry) { r.Register(Type, "", Decoder{}) }

// Decode implements eventing.Decoder.
func (Decoder) Decode(e event.Event) (eventing.Signal, error) {
	return &eventing.Sweep{Source: e.Source(), Seen: e.Time()}, nil
}
