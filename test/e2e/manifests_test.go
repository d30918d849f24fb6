//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/yaml"

	"function/test/e2e/cluster"
)

// resourceOf maps the kinds deploy/eventing uses to their API resources.
var resourceOf = map[string]schema.GroupVersionResource{
	"ServiceAccount":     {Version: "v1", Resource: "serviceaccounts"},
	"ClusterRole":        {Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterroles"},
	"ClusterRoleBinding": {Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterrolebindings"},
	"Broker":             {Group: "eventing.knative.dev", Version: "v1", Resource: "brokers"},
	"Trigger":            {Group: "eventing.knative.dev", Version: "v1", Resource: "triggers"},
	"ApiServerSource":    {Group: "sources.knative.dev", Version: "v1", Resource: "apiserversources"},
	"IntegrationSource":  {Group: "sources.knative.dev", Version: "v1alpha1", Resource: "integrationsources"},
}

// TestEventingManifestsValidate installs the Knative eventing CRDs of knative.dev/eventing
// v0.50.0 (its config/core/resources) into the real API server and sends every object of
// deploy/eventing as a server-side dry run: each must pass the CRD schemas and validation.
func TestEventingManifestsValidate(t *testing.T) {
	ctx := context.Background()
	root, _ := filepath.Abs("../..")
	out, err := exec.Command("go", "mod", "download", "-json", "knative.dev/eventing@v0.50.0").Output()
	if err != nil {
		t.Fatalf("go mod download knative.dev/eventing@v0.50.0: %v", err)
	}
	var mod struct{ Dir string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		t.Fatalf("module dir: %v %s", err, out)
	}
	c, err := cluster.Start(ctx, cluster.Options{NoArgo: true, NoControllerManager: true, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	dyn := c.Dynamic()
	crdGVR := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	var crds []string
	for _, f := range []string{"apiserversource.yaml", "broker.yaml", "trigger.yaml", "integrationsource.yaml"} {
		for _, obj := range readObjects(t, filepath.Join(mod.Dir, "config", "core", "resources", f)) {
			if _, err := dyn.Resource(crdGVR).Create(ctx, obj, metav1.CreateOptions{}); err != nil {
				t.Fatalf("installing CRD %s: %v", obj.GetName(), err)
			}
			crds = append(crds, obj.GetName())
		}
	}
	for _, name := range crds {
		if err := waitFor(ctx, 30*time.Second, func() bool {
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
		}); err != nil {
			t.Fatalf("CRD %s not established", name)
		}
	}
	if _, err := c.Kube().CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "argo-disruption-handler"}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	var kust struct{ Resources []string }
	b, err := os.ReadFile(filepath.Join(root, "deploy", "eventing", "kustomization.yaml"))
	if err != nil || yaml.Unmarshal(b, &kust) != nil || len(kust.Resources) == 0 {
		t.Fatalf("reading deploy/eventing/kustomization.yaml: %v", err)
	}
	n := 0
	for _, f := range kust.Resources {
		for _, obj := range readObjects(t, filepath.Join(root, "deploy", "eventing", f)) {
			gvr, ok := resourceOf[obj.GetKind()]
			if !ok {
				t.Errorf("%s: kind %s not known to this test", f, obj.GetKind())
				continue
			}
			ri := dyn.Resource(gvr)
			var err error
			if obj.GetNamespace() != "" {
				_, err = ri.Namespace(obj.GetNamespace()).Create(ctx, obj, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			} else {
				_, err = ri.Create(ctx, obj, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			}
			if err != nil {
				t.Errorf("%s: %s %s refused: %v", f, obj.GetKind(), obj.GetName(), err)
				continue
			}
			n++
		}
	}
	t.Logf("%d objects of deploy/eventing accepted by a server-side dry run (kube-apiserver v1.35.4, Knative eventing v0.50.0 CRDs)", n)
}

// readObjects splits a YAML file into objects.
func readObjects(t *testing.T, path string) []*unstructured.Unstructured {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []*unstructured.Unstructured
	for _, doc := range bytes.Split(b, []byte("\n---")) {
		if strings.TrimSpace(string(doc)) == "" {
			continue
		}
		var m map[string]any
		if err := yaml.Unmarshal(doc, &m); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if len(m) == 0 {
			continue
		}
		out = append(out, &unstructured.Unstructured{Object: m})
	}
	return out
}
