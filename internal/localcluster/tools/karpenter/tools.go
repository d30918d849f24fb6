//go:build tools

// Package tools pins sigs.k8s.io/karpenter v1.15.0; localcluster/build-bins.sh builds its KWOK
// cloud provider, sigs.k8s.io/karpenter/kwok. Its go line (1.26.9) is newer than the machine's Go:
// build it with GOTOOLCHAIN=go1.27.3, as build-bins.sh does.
package tools

import _ "sigs.k8s.io/karpenter/kwok"
