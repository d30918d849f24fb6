//go:build tools

// Package tools pins helm.sh/helm/v4 v4.3.2; localcluster/build-bins.sh builds helm.sh/helm/v4/cmd/helm from it.
package tools

import _ "helm.sh/helm/v4/cmd/helm"
