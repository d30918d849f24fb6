//go:build tools

// Package tools pins knative.dev/func v0.44.0; localcluster/build-bins.sh builds knative.dev/func/cmd/func from it.
package tools

import _ "knative.dev/func/cmd/func"
