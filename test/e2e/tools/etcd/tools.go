//go:build tools

// Package tools pins the etcd server module; build with
// go build go.etcd.io/etcd/server/v3 (see test/e2e/build-bins.sh).
package tools

import _ "go.etcd.io/etcd/server/v3"
