//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"

	"function/internal/localcluster"
	"function/internal/manifests"
)

// knativeVersion is the Knative release whose CRDs the manifests are checked against (the same
// eventing module as the ApiServerSource adapter of internal/localcluster/tools/adapter).
const knativeVersion = "v0.50.0"

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// moduleDir returns the directory of a module in the Go module cache, downloading it from the
// module proxy the first time.
func moduleDir(t *testing.T, module string) string {
	t.Helper()
	out, err := exec.Command("go", "mod", "download", "-json", module).Output()
	if err != nil {
		t.Fatalf("go mod download %s: %v", module, err)
	}
	var mod struct{ Dir string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		t.Fatalf("module dir of %s: %v %s", module, err, out)
	}
	return mod.Dir
}

// knativeCRDFiles are every CRD of Knative eventing (config/core/resources) and serving
// (config/core/300-resources) at knativeVersion.
func knativeCRDFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	for _, d := range []string{
		filepath.Join(moduleDir(t, "knative.dev/eventing@"+knativeVersion), "config", "core", "resources"),
		filepath.Join(moduleDir(t, "knative.dev/serving@"+knativeVersion), "config", "core", "300-resources"),
	} {
		m, err := filepath.Glob(filepath.Join(d, "*.yaml"))
		if err != nil || len(m) == 0 {
			t.Fatalf("no CRDs in %s: %v", d, err)
		}
		files = append(files, m...)
	}
	return files
}

// installCRDs creates the CRDs of files and waits until each is Established.
func installCRDs(ctx context.Context, t *testing.T, dyn dynamic.Interface, files []string) []string {
	t.Helper()
	var names []string
	for _, f := range files {
		for _, obj := range readObjects(t, f) {
			if obj.GetKind() != "CustomResourceDefinition" {
				continue
			}
			if _, err := dyn.Resource(crdGVR).Create(ctx, obj, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				t.Fatalf("installing CRD %s from %s: %v", obj.GetName(), f, err)
			}
			names = append(names, obj.GetName())
		}
	}
	for _, name := range names {
		if !crdEstablished(ctx, dyn, name, 30*time.Second) {
			t.Fatalf("CRD %s not established", name)
		}
	}
	return names
}

func crdEstablished(ctx context.Context, dyn dynamic.Interface, name string, timeout time.Duration) bool {
	return waitFor(ctx, timeout, func() bool {
		u, err := dyn.Resource(crdGVR).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false
		}
		conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
		for _, cnd := range conds {
			m, _ := cnd.(map[string]any)
			if m["type"] == "Established" && m["status"] == "True" {
				return true
			}
		}
		return false
	}) == nil
}

// mapperFor returns a REST mapper that knows every kind of objs (discovery sees a new CRD shortly
// after it is Established).
func mapperFor(ctx context.Context, t *testing.T, c *localcluster.Cluster, objs []*unstructured.Unstructured) meta.RESTMapper {
	t.Helper()
	m := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(c.Kube().Discovery()))
	for _, o := range objs {
		gvk := o.GroupVersionKind()
		if err := waitFor(ctx, 15*time.Second, func() bool {
			if _, err := m.RESTMapping(gvk.GroupKind(), gvk.Version); err != nil {
				m.Reset()
				return false
			}
			return true
		}); err != nil {
			t.Fatalf("the API server does not serve %s", gvk)
		}
	}
	return m
}

// resourceFor returns the client of obj's resource (namespaced or not).
func resourceFor(t *testing.T, dyn dynamic.Interface, m meta.RESTMapper, obj *unstructured.Unstructured) dynamic.ResourceInterface {
	t.Helper()
	gvk := obj.GroupVersionKind()
	mapping, err := m.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		t.Fatalf("%s: %v", gvk, err)
	}
	if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
		return dyn.Resource(mapping.Resource).Namespace(obj.GetNamespace())
	}
	return dyn.Resource(mapping.Resource)
}

// dryRunApply sends obj as `kubectl apply --server-side --dry-run=server` does, with strict field
// validation: an unknown or misspelt field is an error, not a warning.
func dryRunApply(ctx context.Context, ri dynamic.ResourceInterface, obj *unstructured.Unstructured) error {
	b, err := json.Marshal(obj.Object)
	if err != nil {
		return err
	}
	force := true
	_, err = ri.Patch(ctx, obj.GetName(), types.ApplyPatchType, b, metav1.PatchOptions{
		DryRun: []string{metav1.DryRunAll}, Force: &force, FieldManager: "adh-e2e", FieldValidation: "Strict"})
	return err
}

// TestManifestsDryRun installs the CRDs of Knative eventing and serving v0.50.0 (from their Go
// modules' config folders) next to the Argo CRDs into the real API server, then sends every object
// of deploy/base, of each overlay and of the network-policy and event-policy components (rendered
// as `kubectl kustomize` does) as a server-side dry run with strict field validation: each must
// pass the CRD schemas and the API server's validation. The namespace is created for real (a dry-run namespace does not make its objects
// admissible). With the cached kubectl, `kubectl kustomize` must render the same objects and
// `kubectl apply -k <overlay> --dry-run=server` must succeed: the README's commands.
func TestManifestsDryRun(t *testing.T) {
	ctx := context.Background()
	files := knativeCRDFiles(t)
	start := time.Now()
	c, err := localcluster.Start(ctx, localcluster.Options{NoArgo: true, NoControllerManager: true, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	up := time.Now()
	dyn := c.Dynamic()
	crds := installCRDs(ctx, t, dyn, files)
	for _, name := range []string{"workflows.argoproj.io", "workflowtaskresults.argoproj.io"} {
		if !crdEstablished(ctx, dyn, name, 10*time.Second) {
			t.Fatalf("Argo CRD %s not installed", name)
		}
	}
	t.Logf("stack up in %.1f s (with any wait for the machine's stack lock), %d Knative CRDs established in %.1f s",
		up.Sub(start).Seconds(), len(crds), time.Since(up).Seconds())

	kubectl := c.KubectlPath()
	// The kinds each path must ship, so that the security objects stay checked: the overlays'
	// NetworkPolicy, and the EventPolicies of the component for clusters with Knative's OIDC on.
	// (Knative's webhook, which refuses an EventPolicy while OIDC is off, does not run here.)
	mustShip := map[string]map[string]int{
		"overlays/default":          {"NetworkPolicy": 1, "Service": 1},
		"overlays/dry-run":          {"NetworkPolicy": 1, "Service": 1},
		"components/network-policy": {"NetworkPolicy": 1},
		"components/event-policy":   {"EventPolicy": 2},
	}
	for _, path := range append(append([]string{"base"}, manifests.Overlays...), "components/network-policy", "components/event-policy") {
		t.Run(path, func(t *testing.T) {
			objs, err := manifests.Render(path)
			if err != nil {
				t.Fatal(err)
			}
			m := mapperFor(ctx, t, c, objs)
			// Namespaces first: validated, then created for real.
			sort.SliceStable(objs, func(i, j int) bool {
				return objs[i].GetKind() == "Namespace" && objs[j].GetKind() != "Namespace"
			})
			kinds := map[string]int{}
			for _, obj := range objs {
				ri := resourceFor(t, dyn, m, obj)
				if err := dryRunApply(ctx, ri, obj); err != nil {
					t.Errorf("%s %s/%s refused: %v", obj.GetKind(), obj.GetNamespace(), obj.GetName(), err)
					continue
				}
				kinds[obj.GetKind()]++
				if obj.GetKind() == "Namespace" {
					if _, err := ri.Create(ctx, obj, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
						t.Fatal(err)
					}
				}
			}
			t.Logf("deploy/%s: all %d objects accepted by a server-side dry run: %v", path, len(objs), kinds)
			for kind, n := range mustShip[path] {
				if kinds[kind] != n {
					t.Errorf("deploy/%s: %d %s accepted, want %d", path, kinds[kind], kind, n)
				}
			}

			if kubectl == "" {
				t.Logf("kubectl not built (internal/localcluster/build-bins.sh kubectl): kubectl kustomize / apply -k not checked")
				return
			}
			dir := filepath.Join(manifests.Dir(), path)
			out, err := exec.CommandContext(ctx, kubectl, "kustomize", dir).Output()
			if err != nil {
				t.Fatalf("kubectl kustomize %s: %v", dir, err)
			}
			if !sameObjects(t, objs, splitYAML(t, out)) {
				t.Errorf("kubectl kustomize %s renders other objects than sigs.k8s.io/kustomize/api", path)
			}
			apply := exec.CommandContext(ctx, kubectl, "--kubeconfig", c.Kubeconfig(), "apply", "-k", dir, "--dry-run=server")
			if out, err := apply.CombinedOutput(); err != nil {
				t.Errorf("kubectl apply -k %s --dry-run=server: %v\n%s", path, err, out)
			} else {
				t.Logf("kubectl apply -k deploy/%s --dry-run=server:\n%s", path, strings.TrimSpace(string(out)))
			}
		})
	}

	// The dry run does check: a misspelt field in the Service and a wrong type in the PingSource
	// are refused (the schemas; Knative's webhooks, which would check more, do not run here).
	objs, err := manifests.Render(manifests.Overlays[0])
	if err != nil {
		t.Fatal(err)
	}
	m := mapperFor(ctx, t, c, objs)
	svc := manifests.Find(objs, "Service", "argo-disruption-handler").DeepCopy()
	containers, _, _ := unstructured.NestedSlice(svc.Object, "spec", "template", "spec", "containers")
	containers[0].(map[string]any)["imagee"] = "x"
	_ = unstructured.SetNestedSlice(svc.Object, containers, "spec", "template", "spec", "containers")
	if err := dryRunApply(ctx, resourceFor(t, dyn, m, svc), svc); err == nil || !strings.Contains(err.Error(), "imagee") {
		t.Errorf("a Service with a misspelt field was not refused: %v", err)
	}
	ping := manifests.Find(objs, "PingSource", "sweep").DeepCopy()
	_ = unstructured.SetNestedField(ping.Object, int64(5), "spec", "schedule")
	if err := dryRunApply(ctx, resourceFor(t, dyn, m, ping), ping); err == nil || !strings.Contains(err.Error(), "schedule") {
		t.Errorf("a PingSource with a numeric schedule was not refused: %v", err)
	}
}

// splitYAML splits a multi-document YAML stream into objects.
func splitYAML(t *testing.T, b []byte) []*unstructured.Unstructured {
	t.Helper()
	var out []*unstructured.Unstructured
	for _, doc := range bytes.Split(b, []byte("\n---")) {
		if strings.TrimSpace(string(doc)) == "" {
			continue
		}
		var m map[string]any
		if err := yaml.Unmarshal(doc, &m); err != nil {
			t.Fatal(err)
		}
		if len(m) > 0 {
			out = append(out, &unstructured.Unstructured{Object: m})
		}
	}
	return out
}

// sameObjects compares two renderings object by object (through JSON, so numbers compare).
func sameObjects(t *testing.T, a, b []*unstructured.Unstructured) bool {
	t.Helper()
	norm := func(objs []*unstructured.Unstructured) map[string]any {
		out := map[string]any{}
		for _, o := range objs {
			j, _ := json.Marshal(o.Object)
			var v any
			_ = json.Unmarshal(j, &v)
			out[o.GetKind()+"/"+o.GetNamespace()+"/"+o.GetName()] = v
		}
		return out
	}
	na, nb := norm(a), norm(b)
	same := len(a) == len(b) && reflect.DeepEqual(na, nb)
	if !same {
		for k, v := range na {
			if !reflect.DeepEqual(v, nb[k]) {
				t.Logf("differs: %s", k)
			}
		}
	}
	return same
}

// readObjects splits a YAML file into objects.
func readObjects(t *testing.T, path string) []*unstructured.Unstructured {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return splitYAML(t, b)
}
