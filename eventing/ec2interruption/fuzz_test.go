package ec2interruption

import (
	"testing"

	"function/eventing"
	"function/eventing/eventingtest"
)

// FuzzDecode: any data in any envelope decodes to a Disruption naming valid instance IDs, an
// Ignore, or a Malformed error; never a panic, and SQS-in-SQS nesting stays bounded.
func FuzzDecode(f *testing.F) {
	for _, name := range []string{"ec2-spot-interruption-integrationsource.json", "ec2-rebalance-awssqssource.json",
		"ec2-terminated-triggermesh-sqs.json", "aws-health-scheduled-change-triggermesh-events.json"} {
		f.Add(eventingtest.Load(f, name).DataEncoded)
	}
	f.Add([]byte(`{"Body":"{\"Body\":\"{\\\"Body\\\":\\\"{}\\\"}\"}"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		e := eventingtest.Event(IntegrationSourceSQS, data)
		sig, err := Decoder{}.Decode(e)
		if eventingtest.Refused(t, sig, err) {
			return
		}
		switch s := sig.(type) {
		case eventing.Ignore:
		case *eventing.Disruption:
			if len(s.InstanceIDs) == 0 || s.Reason == "" {
				t.Fatalf("bad disruption %+v", s)
			}
			for _, id := range s.InstanceIDs {
				if !instanceID.MatchString(id) {
					t.Fatalf("bad instance id %q", id)
				}
			}
		default:
			t.Fatalf("unexpected %T", sig)
		}
	})
}
