// Package manifests renders the kustomize manifests of deploy/ (base, components, overlays) the
// way `kubectl kustomize` / `kubectl apply -k` do, for the tests that check them: deploy's unit
// test (func.yaml agreement, the exact ClusterRole), the e2e tests (server-side dry run, the
// function's repair steps under the shipped ClusterRole), the demo and the benchmarks.
package manifests

import (
	"fmt"
	"path/filepath"
	"runtime"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// Overlays are the kustomizations users apply, relative to Dir.
var Overlays = []string{"overlays/default", "overlays/dry-run"}

// Dir returns this folder's absolute path (the source tree's deploy/).
func Dir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "deploy")
}

// Render builds the kustomization at path (relative to Dir, e.g. "base" or "overlays/default")
// and returns its objects in kustomize's output order.
func Render(path string) ([]*unstructured.Unstructured, error) {
	dir := filepath.Join(Dir(), path)
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	var out []*unstructured.Unstructured
	for _, r := range rm.Resources() {
		// Through JSON, so that numbers are int64/float64 as in every Kubernetes client.
		b, err := r.MarshalJSON()
		if err != nil {
			return nil, fmt.Errorf("kustomize build %s: %s: %w", dir, r.CurId(), err)
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(b); err != nil {
			return nil, fmt.Errorf("kustomize build %s: %s: %w", dir, r.CurId(), err)
		}
		out = append(out, u)
	}
	return out, nil
}

// Find returns the object of that kind and name, or nil.
func Find(objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	return nil
}

// Broker returns the Broker named default and every Trigger that deploy/base ships.
func Broker() (*unstructured.Unstructured, []*unstructured.Unstructured, error) {
	objs, err := Render("base")
	if err != nil {
		return nil, nil, err
	}
	broker := Find(objs, "Broker", "default")
	if broker == nil {
		return nil, nil, fmt.Errorf("deploy/base has no Broker named default")
	}
	var triggers []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == "Trigger" {
			triggers = append(triggers, o)
		}
	}
	if len(triggers) == 0 {
		return nil, nil, fmt.Errorf("deploy/base has no Trigger")
	}
	return broker, triggers, nil
}
