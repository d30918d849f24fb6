//go:build tools

// Package tools pins k8s.io/kubernetes v1.35.4 for kube-scheduler, which Karpenter needs (it
// provisions only for pods the scheduler marked Unschedulable). A module of its own so that the
// build key of the other Kubernetes binaries does not change with it.
package tools

import _ "k8s.io/kubernetes/cmd/kube-scheduler"
