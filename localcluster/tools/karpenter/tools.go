//go:build tools

// Package tools pins sigs.k8s.io/karpenter v1.14.1 (the newest whose go line the local Go
// accepts); localcluster/build-bins.sh builds its KWOK cloud provider, sigs.k8s.io/karpenter/kwok.
package tools

import _ "sigs.k8s.io/karpenter/kwok"
