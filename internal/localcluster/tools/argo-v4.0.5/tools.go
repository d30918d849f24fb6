//go:build tools

// Package tools pins github.com/argoproj/argo-workflows/v4 v4.0.5; localcluster/build-bins.sh builds github.com/argoproj/argo-workflows/v4/cmd/workflow-controller from it.
package tools

import _ "github.com/argoproj/argo-workflows/v4/cmd/workflow-controller"
