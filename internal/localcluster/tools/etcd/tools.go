//go:build tools

// Package tools pins the etcd server module; build with
// go build go.etcd.io/etcd/server/v3 (see localcluster/build-bins.sh).
package tools

import _ "go.etcd.io/etcd/server/v3"
