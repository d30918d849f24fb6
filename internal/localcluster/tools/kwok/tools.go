//go:build tools

// Package tools pins sigs.k8s.io/kwok v0.7.0; localcluster/build-bins.sh builds sigs.k8s.io/kwok/cmd/kwok from it.
package tools

import _ "sigs.k8s.io/kwok/cmd/kwok"
