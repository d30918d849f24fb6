// Package nodedelete decodes Knative ApiServerSource delete events of Nodes (v1) and Karpenter
// NodeClaims (karpenter.sh/v1), in Resource mode (the object's last state) and Reference mode
// (its name only). Adds and updates of those kinds are acknowledged by the registry unread.
package nodedelete

import (
	"encoding/json"
	"strings"

	"github.com/cloudevents/sdk-go/v2/event"
	"k8s.io/apimachinery/pkg/util/validation"

	"function/eventing"
)

// object is the part of a Node or NodeClaim the handler needs. NodeClaim: spec is Karpenter's,
// status.nodeName and status.providerID are set once the instance registered
// (sigs.k8s.io/karpenter pkg/apis/v1/nodeclaim_status.go).
type object struct {
	Kind     string `json:"kind"`
	Metadata struct {
		Name            string            `json:"name"`
		Labels          map[string]string `json:"labels"`
		OwnerReferences []struct {
			Kind string `json:"kind"`
			Name string `json:"name"`
		} `json:"ownerReferences"`
	} `json:"metadata"`
	Spec struct {
		ProviderID string `json:"providerID"`
	} `json:"spec"`
	Status struct {
		NodeName   string `json:"nodeName"`
		ProviderID string `json:"providerID"`
	} `json:"status"`
}

type reference struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
}

// Decoder decodes one kind ("Node" or "NodeClaim") in one mode.
type Decoder struct {
	Kind      string
	Reference bool
}

// Register adds the decoders for Node and NodeClaim deletes in both modes.
func Register(r *eventing.Registry) {
	for _, kind := range []string{"Node", "NodeClaim"} {
		r.Register(eventing.ResourceDelete, kind, Decoder{Kind: kind})
		r.Register(eventing.RefDelete, kind, Decoder{Kind: kind, Reference: true})
	}
}

// Decode implements eventing.Decoder.
func (d Decoder) Decode(e event.Event) (eventing.Signal, error) {
	data, err := eventing.JSONData(e)
	if err != nil {
		return nil, err
	}
	// A NodeClaim is deleted only once its instance is terminated (its finalizer waits for it),
	// whatever the mode.
	g := &eventing.NodeGone{Kind: d.Kind, Seen: e.Time()}
	if d.Kind == "NodeClaim" {
		g.Machine = eventing.MachineTerminated
	}
	var name string
	if d.Reference {
		name, err = d.referenced(e, data)
	} else {
		name, err = d.object(e, data, g)
	}
	if err != nil {
		return nil, err
	}
	if msgs := validation.IsDNS1123Subdomain(name); len(msgs) > 0 {
		return nil, eventing.Malformed(e, "%s name %q: %s", d.Kind, name, strings.Join(msgs, "; "))
	}
	if d.Kind == "Node" {
		g.NodeName = name
	} else if g.NodeName != "" {
		if msgs := validation.IsDNS1123Subdomain(g.NodeName); len(msgs) > 0 {
			return nil, eventing.Malformed(e, "NodeClaim %s status.nodeName %q: %s", name, g.NodeName, strings.Join(msgs, "; "))
		}
	}
	if g.NodeName == "" {
		// A NodeClaim deleted before its instance registered a Node (or a reference to one, whose
		// Node name we cannot know): no pod can be bound to it.
		return eventing.Ignore{Reason: d.Kind + " " + name + " has no Node name"}, nil
	}
	return g, nil
}

// referenced decodes a Reference-mode event: the deleted object's name.
func (d Decoder) referenced(e event.Event, data []byte) (string, error) {
	var ref reference
	if err := json.Unmarshal(data, &ref); err != nil {
		return "", eventing.Malformed(e, "data is not an object reference: %v", err)
	}
	if ref.Kind != d.Kind {
		return "", eventing.Malformed(e, "reference is to a %q, not a %s", ref.Kind, d.Kind)
	}
	return ref.Name, nil
}

// object decodes a Resource-mode event: the deleted object's name, and into g what it says of
// its machine and Node.
func (d Decoder) object(e event.Event, data []byte, g *eventing.NodeGone) (string, error) {
	var obj object
	if err := json.Unmarshal(data, &obj); err != nil {
		return "", eventing.Malformed(e, "data is not a %s: %v", d.Kind, err)
	}
	if obj.Kind != "" && obj.Kind != d.Kind {
		return "", eventing.Malformed(e, "data is a %q, not a %s", obj.Kind, d.Kind)
	}
	g.ProviderID = obj.Spec.ProviderID
	if karpenterManaged(obj.Metadata.Labels) {
		g.Machine = eventing.MachineTerminated
	}
	if d.Kind == "NodeClaim" {
		g.ProviderID = obj.Status.ProviderID
		g.NodeName = obj.Status.NodeName
		g.Claim = obj.Metadata.Name
	}
	for _, o := range obj.Metadata.OwnerReferences {
		if d.Kind == "Node" && o.Kind == "NodeClaim" {
			g.Claim = o.Name // Karpenter makes a Node's NodeClaim its owner
		}
	}
	return obj.Metadata.Name, nil
}

// karpenterManaged reports whether a Node was launched by Karpenter (v1 label, or the v1beta1 /
// v0.3x ones). Karpenter's termination finalizer on such a Node is removed only after the
// instance is terminated, so its delete event means the machine is gone.
func karpenterManaged(labels map[string]string) bool {
	for _, k := range []string{"karpenter.sh/nodepool", "karpenter.sh/provisioner-name", "karpenter.sh/registered"} {
		if _, ok := labels[k]; ok {
			return true
		}
	}
	return false
}
