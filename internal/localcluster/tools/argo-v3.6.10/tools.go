//go:build tools

// Package tools pins github.com/argoproj/argo-workflows/v3 v3.6.10; localcluster/build-bins.sh builds github.com/argoproj/argo-workflows/v3/cmd/workflow-controller from it.
package tools

import _ "github.com/argoproj/argo-workflows/v3/cmd/workflow-controller"
