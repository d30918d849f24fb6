//go:build tools

// Package tools pins the three data-plane mains of knative.dev/eventing that
// build-bins.sh builds for the local Broker (localcluster/broker.go): the
// MT-channel broker's ingress and filter and the InMemoryChannel dispatcher.
package tools

import (
	_ "knative.dev/eventing/cmd/broker/filter"
	_ "knative.dev/eventing/cmd/broker/ingress"
	_ "knative.dev/eventing/cmd/in_memory/channel_dispatcher"
)
