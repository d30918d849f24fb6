package families_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"

	"function/eventing"
	"function/eventing/eventingtest"
	"function/eventing/families"
)

// Every fixture decodes through the registry to the signal its name promises.
func TestRegistryDecodesFixtures(t *testing.T) {
	cases := []struct {
		file      string
		wantOp    eventing.Op // "" means Ignore
		wantPod   bool        // the signal carries the pod object (Resource mode), or the instance ID
		wantName  string
		wantNS    string
		ignoreWhy string
	}{
		{"pod-delete-evicted.json", eventing.OpDelete, true, "nightly-etl-7k2xq-extract-1770056762", "argo", ""},
		{"pod-update-evicting.json", eventing.OpUpdate, true, "nightly-etl-7k2xq-extract-1770056762", "argo", ""},
		{"pod-delete-forced.json", eventing.OpDelete, true, "nightly-etl-7k2xq-extract-1770056762", "argo", ""},
		{"pod-update-running.json", eventing.OpUpdate, true, "nightly-etl-7k2xq-extract-1770056762", "argo", ""},
		{"pod-delete-completed.json", eventing.OpDelete, true, "nightly-etl-7k2xq-extract-1770056762", "argo", ""},
		{"pod-update-podgc-finalizer.json", eventing.OpUpdate, true, "nightly-etl-7k2xq-extract-1770056762", "argo", ""},
		{"pod-update-kubelet-evicted.json", eventing.OpUpdate, true, "nightly-etl-7k2xq-extract-1770056762", "argo", ""},
		{"pod-delete-containerset.json", eventing.OpDelete, true, "build-x9p2m-build-2960462934", "argo", ""},
		{"pod-delete-agent.json", eventing.OpDelete, true, "nightly-etl-7k2xq-1340600742-agent", "argo", ""},
		{"pod-delete-nonworkflow.json", "", false, "", "", "pod without the workflows.argoproj.io/workflow label"},
		{"pod-ref-delete.json", eventing.OpDelete, false, "nightly-etl-7k2xq-extract-1770056762", "argo", ""},
		{"pod-ref-update.json", eventing.OpUpdate, false, "nightly-etl-7k2xq-extract-1770056762", "argo", ""},
		{"node-update.json", "", false, "", "", `kind "Node" of dev.knative.apiserver.resource.update is not handled`},
		// For Node deletes, wantNS says whether the machine is proven terminated (Machine: terminated).
		{"node-ref-delete.json", "node", false, "ip-10-0-1-23.eu-west-1.compute.internal", "", ""},
		{"node-delete.json", "node", true, "ip-10-0-1-23.eu-west-1.compute.internal", "machine gone", ""},
		{"node-delete-unmanaged.json", "node", true, "ip-10-0-1-23.eu-west-1.compute.internal", "", ""},
		{"nodeclaim-delete.json", "node", true, "ip-10-0-1-23.eu-west-1.compute.internal", "machine gone", ""},
		{"ping-sweep.json", "sweep", false, "", "", ""},
	}
	seen := map[string]bool{}
	r := families.Registry()
	for _, tc := range cases {
		seen[tc.file] = true
		t.Run(tc.file, func(t *testing.T) {
			sig, err := r.Decode(eventingtest.Load(t, tc.file))
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if tc.wantOp == "sweep" {
				if sw, ok := sig.(*eventing.Sweep); !ok || sw.Seen.IsZero() || !strings.HasSuffix(sw.Source, "/pingsources/argo-disruption-handler-sweep") {
					t.Fatalf("got %#v, want a Sweep from the PingSource", sig)
				}
				return
			}
			if tc.wantOp == "node" {
				g, ok := sig.(*eventing.NodeGone)
				if !ok || g.NodeName != tc.wantName || (g.ProviderID == "aws:///eu-west-1a/i-0abc123def4567890") != tc.wantPod {
					t.Fatalf("got %#v, want NodeGone{%s}", sig, tc.wantName)
				}
				if (g.Machine == eventing.MachineTerminated) != (tc.wantNS == "machine gone") {
					t.Fatalf("Machine = %v, want terminated: %v", g.Machine, tc.wantNS == "machine gone")
				}
				return
			}
			if tc.wantOp == "" {
				ig, ok := sig.(eventing.Ignore)
				if !ok || ig.Reason != tc.ignoreWhy {
					t.Fatalf("got %#v, want Ignore{%q}", sig, tc.ignoreWhy)
				}
				return
			}
			pc, ok := sig.(*eventing.PodChange)
			if !ok {
				t.Fatalf("got %T, want *PodChange", sig)
			}
			if pc.Op != tc.wantOp || pc.Name != tc.wantName || pc.Namespace != tc.wantNS || (pc.Pod != nil) != tc.wantPod {
				t.Fatalf("got op=%s %s/%s pod=%v, want op=%s %s/%s pod=%v", pc.Op, pc.Namespace, pc.Name, pc.Pod != nil, tc.wantOp, tc.wantNS, tc.wantName, tc.wantPod)
			}
			if pc.Seen.IsZero() {
				t.Fatal("Seen not set from the event time")
			}
		})
	}
	for _, f := range eventingtest.All(t) {
		if !seen[f] && !disruptionFixture[f] {
			t.Errorf("fixture %s has no case", f)
		}
	}
}

func TestRegistryRefusesBadInput(t *testing.T) {
	base := eventingtest.Load(t, "pod-delete-forced.json")
	ref := eventingtest.Load(t, "pod-ref-delete.json")
	with := func(e event.Event, f func(*event.Event)) event.Event { c := e.Clone(); f(&c); return c }
	cases := []struct {
		name    string
		ev      event.Event
		wantErr error // nil: want Ignore
	}{
		{"unknown type", with(base, func(e *event.Event) { e.SetType("com.example.unknown") }), eventing.ErrUnknownType},
		{"apiserversource kind we do not handle", with(base, func(e *event.Event) { e.SetExtension("kind", "ConfigMap") }), nil},
		{"xml content type", with(base, func(e *event.Event) { e.SetDataContentType("application/xml") }), eventing.ErrMalformed},
		{"no data", with(base, func(e *event.Event) { _ = e.SetData("application/json", nil); e.DataEncoded = nil }), eventing.ErrMalformed},
		{"truncated JSON", with(base, func(e *event.Event) { e.DataEncoded = e.DataEncoded[:len(e.DataEncoded)/2] }), eventing.ErrMalformed},
		{"array instead of pod", with(base, func(e *event.Event) { e.DataEncoded = []byte(`["workflows.argoproj.io/workflow"]`) }), eventing.ErrMalformed},
		{"not a pod", with(base, func(e *event.Event) {
			e.DataEncoded = []byte(`{"kind":"ConfigMap","metadata":{"name":"a","namespace":"b","labels":{"workflows.argoproj.io/workflow":"w"}}}`)
		}), eventing.ErrMalformed},
		{"pod without namespace", with(base, func(e *event.Event) {
			e.DataEncoded = []byte(`{"kind":"Pod","metadata":{"name":"a","labels":{"workflows.argoproj.io/workflow":"w"}}}`)
		}), eventing.ErrMalformed},
		{"label key only in an annotation value", with(base, func(e *event.Event) {
			e.DataEncoded = []byte(`{"kind":"Pod","metadata":{"name":"a","namespace":"b","annotations":{"note":"\"workflows.argoproj.io/workflow\""}}}`)
		}), nil},
		{"reference to a node", with(ref, func(e *event.Event) {
			e.DataEncoded = []byte(`{"apiVersion":"v1","kind":"Node","name":"n","namespace":""}`)
		}), eventing.ErrMalformed},
		{"reference with a bad name", with(ref, func(e *event.Event) {
			e.DataEncoded = []byte(`{"apiVersion":"v1","kind":"Pod","name":"../../etc","namespace":"argo"}`)
		}), eventing.ErrMalformed},
	}
	r := families.Registry()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sig, err := r.Decode(tc.ev)
			if tc.wantErr == nil {
				if _, ok := sig.(eventing.Ignore); !ok || err != nil {
					t.Fatalf("got %#v, %v; want Ignore", sig, err)
				}
				return
			}
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("got %#v, %v; want %v", sig, err, tc.wantErr)
			}
		})
	}
}

func TestRegisterTwicePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("no panic")
		}
	}()
	r := families.Registry()
	r.Register(eventing.ResourceDelete, "Pod", eventing.DecoderFunc(func(event.Event) (eventing.Signal, error) { return nil, nil }))
}
