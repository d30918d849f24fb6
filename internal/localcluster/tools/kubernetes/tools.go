//go:build tools

// Package tools pins k8s.io/kubernetes; localcluster/build-bins.sh builds
// cmd/kube-apiserver, cmd/kube-controller-manager and cmd/kubectl from it.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
