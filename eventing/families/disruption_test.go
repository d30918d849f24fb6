package families_test

import (
	"reflect"
	"slices"
	"testing"

	"function/eventing"
	"function/eventing/eventingtest"
	"function/eventing/families"
)

// Karpenter Events and EC2/AWS Health messages, in every envelope, decode to the Disruption they
// announce; informative ones are acknowledged.
func TestDisruptionFixtures(t *testing.T) {
	const iid = "i-0abc123def4567890"
	cases := []struct {
		file string
		want *eventing.Disruption // nil: Ignore
	}{
		{"karpenter-event-pod-evicted.json", &eventing.Disruption{Source: "karpenter", Reason: "Evicted", Message: "Evicted pod: Underutilized",
			PodNamespace: "argo", PodName: "nightly-etl-7k2xq-extract-1770056762"}},
		{"karpenter-event-node-disruption-terminating.json", &eventing.Disruption{Source: "karpenter", Reason: "DisruptionTerminating",
			Message: "Disrupting Node: Underutilized", NodeName: "ip-10-0-1-23.eu-west-1.compute.internal"}},
		{"karpenter-event-node-spot-interrupted.json", &eventing.Disruption{Source: "karpenter", Reason: "SpotInterrupted",
			Message: "Spot interruption warning was triggered", NodeName: "ip-10-0-1-23.eu-west-1.compute.internal"}},
		{"karpenter-event-nodeclaim-spot-interrupted.json", &eventing.Disruption{Source: "karpenter", Reason: "SpotInterrupted",
			Message: "Spot interruption warning was triggered", NodeClaimName: "workflows-x7k2p"}},
		{"karpenter-event-unconsolidatable.json", nil},
		{"event-kubelet-killing.json", nil},
		// Captured from Karpenter v1.14.1's KWOK provider (docs/dev/karpenter-local.md): drift, then
		// a NodeClaim deleted. A Node's involvedObject has no namespace; Finalized names no object.
		{"karpenter-kwok-pod-evicted-drifted.json", &eventing.Disruption{Source: "karpenter", Reason: "Evicted", Message: "Evicted pod: Drifted",
			PodNamespace: "e2e-with", PodName: "karp-drift-rjgq6"}},
		{"karpenter-kwok-pod-evicted-forceful.json", &eventing.Disruption{Source: "karpenter", Reason: "Evicted", Message: "Evicted pod: Forceful Termination",
			PodNamespace: "e2e-with", PodName: "karp-nodeclaim-delete-wk5fd"}},
		{"karpenter-kwok-node-disruption-terminating.json", &eventing.Disruption{Source: "karpenter", Reason: "DisruptionTerminating",
			Message: "Disrupting Node: Drifted", NodeName: "kwok-workflows-htcdz-slicerwax-1-p8dile18je-1075300197"}},
		{"karpenter-kwok-nodeclaim-disruption-terminating.json", &eventing.Disruption{Source: "karpenter", Reason: "DisruptionTerminating",
			Message: "Disrupting NodeClaim: Drifted", NodeClaimName: "workflows-htcdz"}},
		{"karpenter-kwok-node-failed-draining.json", nil},
		{"karpenter-kwok-node-finalized.json", nil},
		{"karpenter-kwok-pod-nominated.json", nil},
		{"karpenter-kwok-nodeclaim-disruption-launching.json", nil},
		// Captured from Karpenter v1.15.0's KWOK provider: node repair (reason Unhealthy) and a
		// reboot, a repair action whose only Event is on the NodeClaim.
		{"karpenter-kwok-node-disruption-terminating-unhealthy.json", &eventing.Disruption{Source: "karpenter", Reason: "DisruptionTerminating",
			Message: "Disrupting Node: Unhealthy", NodeName: "kwok-workflows-r4pq8-dutchessphase-1-zisf9gtzb2-2934867813"}},
		{"karpenter-kwok-nodeclaim-reboot-observed.json", &eventing.Disruption{Source: "karpenter", Reason: "RebootObserved",
			Message: "New boot observed (bootID changed); awaiting node readiness", NodeClaimName: "workflows-t9h7r"}},
		{"ec2-spot-interruption-integrationsource.json", &eventing.Disruption{Source: "aws.ec2", Reason: "SpotInterruptionWarning",
			Message: "spot interruption of " + iid + " (terminate in 2 minutes)", InstanceIDs: []string{iid}}},
		{"ec2-spot-interruption-eventbridge-structured.json", &eventing.Disruption{Source: "aws.ec2", Reason: "SpotInterruptionWarning",
			Message: "spot interruption of " + iid + " (terminate in 2 minutes)", InstanceIDs: []string{iid}}},
		{"ec2-rebalance-awssqssource.json", &eventing.Disruption{Source: "aws.ec2", Reason: "RebalanceRecommendation",
			Message: "rebalance recommendation for " + iid, InstanceIDs: []string{iid}}},
		{"ec2-terminated-triggermesh-sqs.json", &eventing.Disruption{Source: "aws.ec2", Reason: "InstanceTerminated",
			Message: "instance " + iid + " is terminated", InstanceIDs: []string{iid}, Machine: eventing.MachineTerminated}},
		{"ec2-capacity-reservation-integrationsource.json", &eventing.Disruption{Source: "aws.ec2", Reason: "CapacityReservationInterruption",
			Message: "capacity reservation interruption of " + iid + " (terminate)", InstanceIDs: []string{iid}}},
		{"aws-health-scheduled-change-triggermesh-events.json", &eventing.Disruption{Source: "aws.health", Reason: "ScheduledChange",
			Message:     "AWS Health scheduled change AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED for " + iid + ", i-0def4567890abc123",
			InstanceIDs: []string{iid, "i-0def4567890abc123"}}},
		{"ec2-running-integrationsource-legacy.json", nil},
		{"ec2-unknown-detail-type-integrationsource.json", nil},
	}
	r := families.Registry()
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			sig, err := r.Decode(eventingtest.Load(t, tc.file))
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if tc.want == nil {
				if _, ok := sig.(eventing.Ignore); !ok {
					t.Fatalf("got %#v, want Ignore", sig)
				}
				return
			}
			d, ok := sig.(*eventing.Disruption)
			if !ok {
				t.Fatalf("got %T, want *Disruption", sig)
			}
			got, want := *d, *tc.want
			if got.Seen.IsZero() {
				t.Error("Seen not set")
			}
			got.Seen = want.Seen
			if !slices.Equal(got.InstanceIDs, want.InstanceIDs) {
				t.Fatalf("instances %v, want %v", got.InstanceIDs, want.InstanceIDs)
			}
			got.InstanceIDs, want.InstanceIDs = nil, nil
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("got  %+v\nwant %+v", got, want)
			}
		})
	}
}

// disruptionFixture lists the fixtures TestDisruptionFixtures covers.
var disruptionFixture = map[string]bool{}

func init() {
	for _, f := range []string{
		"karpenter-event-pod-evicted.json", "karpenter-event-node-disruption-terminating.json",
		"karpenter-event-node-spot-interrupted.json", "karpenter-event-nodeclaim-spot-interrupted.json",
		"karpenter-event-unconsolidatable.json", "event-kubelet-killing.json",
		"karpenter-kwok-pod-evicted-drifted.json", "karpenter-kwok-pod-evicted-forceful.json",
		"karpenter-kwok-node-disruption-terminating.json", "karpenter-kwok-nodeclaim-disruption-terminating.json",
		"karpenter-kwok-node-failed-draining.json", "karpenter-kwok-node-finalized.json",
		"karpenter-kwok-pod-nominated.json", "karpenter-kwok-nodeclaim-disruption-launching.json",
		"karpenter-kwok-node-disruption-terminating-unhealthy.json", "karpenter-kwok-nodeclaim-reboot-observed.json",
		"ec2-spot-interruption-integrationsource.json", "ec2-spot-interruption-eventbridge-structured.json",
		"ec2-rebalance-awssqssource.json", "ec2-terminated-triggermesh-sqs.json",
		"ec2-capacity-reservation-integrationsource.json", "aws-health-scheduled-change-triggermesh-events.json",
		"ec2-running-integrationsource-legacy.json", "ec2-unknown-detail-type-integrationsource.json",
	} {
		disruptionFixture[f] = true
	}
}
