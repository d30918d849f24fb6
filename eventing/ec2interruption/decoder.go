// Package ec2interruption decodes EC2 and AWS Health interruption messages — the EventBridge
// events Karpenter's interruption controller reads from SQS — in every envelope they reach a
// Knative broker in:
//   - Knative IntegrationSource aws-sqs (dev.knative.connector.event.aws-sqs, older
//     dev.knative.eventing.aws-sqs): data is the SQS body, the EventBridge JSON;
//   - the legacy knative eventing-awssqs AwsSqsSource (aws.sqs.message): data is the SQS message,
//     whose "Body" string holds the EventBridge JSON;
//   - TriggerMesh AWSSQSSource (com.amazon.sqs.message: the SQS message, Body inlined when it is
//     JSON; com.amazon.events.event: the EventBridge event itself);
//   - an EventBridge API destination whose input transformer sends a structured CloudEvent of
//     type com.amazon.events.event with the event as data.
//
// Karpenter deletes every message it reads from its own queue: the function needs a queue of its
// own, a second target on the same EventBridge rules (the chart's sources.sqs).
package ec2interruption

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"

	"github.com/cloudevents/sdk-go/v2/event"

	"function/eventing"
)

// CloudEvent types carrying these messages.
const (
	IntegrationSourceSQS       = "dev.knative.connector.event.aws-sqs"
	IntegrationSourceSQSLegacy = "dev.knative.eventing.aws-sqs"
	AwsSqsSource               = "aws.sqs.message"
	TriggerMeshSQS             = "com.amazon.sqs.message"
	EventBridgeEvent           = "com.amazon.events.event"
)

// The EventBridge detail-types handled (events.md).
const (
	SpotInterruption       = "EC2 Spot Instance Interruption Warning"
	RebalanceRecommend     = "EC2 Instance Rebalance Recommendation"
	StateChange            = "EC2 Instance State-change Notification"
	HealthEvent            = "AWS Health Event"
	CapacityReservationInt = "EC2 Capacity Reservation Instance Interruption Warning"
)

// stateReasons are the instance states acted on, and the reason recorded for each.
var stateReasons = map[string]string{
	"stopped":    "InstanceStopped",
	"terminated": "InstanceTerminated",
}

// transitions are the states EC2 announces on the way to one of stateReasons: the message that
// follows carries the same news and can act on it, so acting on both would do the work twice.
var transitions = map[string]string{
	"stopping":      "stopped",
	"shutting-down": "terminated",
}

var instanceID = regexp.MustCompile(`^i-[0-9a-f]{8,17}$`)

type bridgeEvent struct {
	ID         string          `json:"id"`
	DetailType string          `json:"detail-type"`
	Source     string          `json:"source"`
	Region     string          `json:"region"`
	Detail     json.RawMessage `json:"detail"`
}

type instanceDetail struct {
	InstanceID     string `json:"instance-id"`
	InstanceAction string `json:"instance-action"`
	State          string `json:"state"`
}

type healthDetail struct {
	Service           string `json:"service"`
	EventTypeCode     string `json:"eventTypeCode"`
	EventTypeCategory string `json:"eventTypeCategory"`
	AffectedEntities  []struct {
		EntityValue string `json:"entityValue"`
	} `json:"affectedEntities"`
}

// Decoder decodes any of the envelopes above.
type Decoder struct{}

// Register adds the decoder for every envelope type.
func Register(r *eventing.Registry) {
	for _, t := range []string{IntegrationSourceSQS, IntegrationSourceSQSLegacy, AwsSqsSource, TriggerMeshSQS, EventBridgeEvent} {
		r.Register(t, "", Decoder{})
	}
}

// maxEnvelopeDepth bounds SQS-in-SQS unwrapping (one level is all any source produces).
const maxEnvelopeDepth = 2

// unwrap finds the EventBridge event in data: the event itself, or an SQS message whose Body
// (a JSON string, or an object when inlined) holds it.
func unwrap(data []byte, depth int) (*bridgeEvent, error) {
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(data, &probe); err != nil {
		return nil, fmt.Errorf("not a JSON object: %v", err)
	}
	if _, ok := probe["detail-type"]; ok {
		var be bridgeEvent
		if err := json.Unmarshal(data, &be); err != nil {
			return nil, fmt.Errorf("EventBridge event: %v", err)
		}
		return &be, nil
	}
	for _, k := range []string{"Body", "body"} {
		raw, ok := probe[k]
		if !ok || depth >= maxEnvelopeDepth {
			continue
		}
		var s string
		if json.Unmarshal(raw, &s) == nil {
			raw = []byte(s)
		}
		return unwrap(raw, depth+1)
	}
	return nil, fmt.Errorf("neither an EventBridge event (detail-type) nor an SQS message (Body)")
}

// Decode implements eventing.Decoder.
func (Decoder) Decode(e event.Event) (eventing.Signal, error) {
	data, err := eventing.JSONData(e)
	if err != nil {
		return nil, err
	}
	be, err := unwrap(data, 0)
	if err != nil {
		return nil, eventing.Malformed(e, "%v", err)
	}
	d := &eventing.Disruption{Source: be.Source, Seen: e.Time()}
	switch be.DetailType {
	case SpotInterruption, RebalanceRecommend, StateChange, CapacityReservationInt:
		return instanceDisruption(e, be, d)
	case HealthEvent:
		return scheduledChange(e, be, d)
	}
	return eventing.Ignore{Reason: fmt.Sprintf("detail-type %q is not an interruption", be.DetailType)}, nil
}

// instanceDisruption decodes the messages about one instance: spot interruption, rebalance
// recommendation, capacity reservation interruption and state change.
func instanceDisruption(e event.Event, be *bridgeEvent, d *eventing.Disruption) (eventing.Signal, error) {
	var det instanceDetail
	if err := json.Unmarshal(be.Detail, &det); err != nil {
		return nil, eventing.Malformed(e, "%s detail: %v", be.DetailType, err)
	}
	if !instanceID.MatchString(det.InstanceID) {
		return nil, eventing.Malformed(e, "%s: instance-id %q", be.DetailType, det.InstanceID)
	}
	d.InstanceIDs = []string{det.InstanceID}
	switch be.DetailType {
	case SpotInterruption:
		d.Reason = "SpotInterruptionWarning"
		d.Message = fmt.Sprintf("spot interruption of %s (%s in 2 minutes)", det.InstanceID, det.InstanceAction)
	case RebalanceRecommend:
		d.Reason = "RebalanceRecommendation"
		d.Message = "rebalance recommendation for " + det.InstanceID
	case CapacityReservationInt:
		d.Reason = "CapacityReservationInterruption"
		d.Message = fmt.Sprintf("capacity reservation interruption of %s (%s)", det.InstanceID, det.InstanceAction)
	case StateChange:
		if next, ok := transitions[det.State]; ok {
			return eventing.Ignore{Reason: "instance " + det.InstanceID + " is " + det.State + ": its " + next + " message follows"}, nil
		}
		reason, ok := stateReasons[det.State]
		if !ok {
			return eventing.Ignore{Reason: "instance " + det.InstanceID + " is " + det.State}, nil
		}
		d.Reason, d.Machine = reason, eventing.MachineTerminated
		d.Message = fmt.Sprintf("instance %s is %s", det.InstanceID, det.State)
	}
	return d, nil
}

// scheduledChange decodes an AWS Health scheduled change of EC2 instances.
func scheduledChange(e event.Event, be *bridgeEvent, d *eventing.Disruption) (eventing.Signal, error) {
	var h healthDetail
	if err := json.Unmarshal(be.Detail, &h); err != nil {
		return nil, eventing.Malformed(e, "AWS Health detail: %v", err)
	}
	if h.Service != "EC2" || h.EventTypeCategory != "scheduledChange" {
		return eventing.Ignore{Reason: "AWS Health " + h.Service + " " + h.EventTypeCategory}, nil
	}
	for _, a := range h.AffectedEntities {
		if instanceID.MatchString(a.EntityValue) {
			d.InstanceIDs = append(d.InstanceIDs, a.EntityValue)
		}
	}
	if len(d.InstanceIDs) == 0 {
		return eventing.Ignore{Reason: "AWS Health scheduled change names no instance"}, nil
	}
	d.Reason = "ScheduledChange"
	d.Message = fmt.Sprintf("AWS Health scheduled change %s for %s", h.EventTypeCode, strings.Join(d.InstanceIDs, ", "))
	return d, nil
}
