// Package families builds the registry of every event family the function understands.
// A new family (Karpenter Events, EC2 interruption messages) is one more line here and a package
// of its own; no other decoder changes.
package families

import (
	"function/eventing"
	"function/eventing/ec2interruption"
	"function/eventing/karpenterevent"
	"function/eventing/nodedelete"
	"function/eventing/pingsource"
	"function/eventing/podreference"
	"function/eventing/podresource"
)

// Registry returns a registry with every family registered.
func Registry() *eventing.Registry {
	r := eventing.NewRegistry()
	podresource.Register(r)
	podreference.Register(r)
	nodedelete.Register(r)
	karpenterevent.Register(r)
	ec2interruption.Register(r)
	pingsource.Register(r)
	return r
}
