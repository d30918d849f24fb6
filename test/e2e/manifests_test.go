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

// chartCase is one set of values the chart is installed with.
type chartCase struct {
	name, namespace, values string
	mustShip                map[string]int // kinds that must be rendered and accepted
}

// chartCases: the defaults, and every optional part the API server here has CRDs for (the
// Prometheus Operator's are not served by the Go module proxy: the PodMonitor, PrometheusRule and
// dashboard are checked by deploy's unit tests only).
var chartCases = []chartCase{
	{"defaults", manifests.Namespace, "", map[string]int{"ApiServerSource": 3, "Trigger": 5, "SinkBinding": 1, "ConfigMap": 1}},
	{"every part", "ops", `
namespaces: [team-a, team-b]
instanceID: ci
sources:
  sqs: {enabled: true, arn: "arn:aws:sqs:eu-west-1:123456789012:adh", region: eu-west-1, secretName: aws}
broker: {class: Kafka, config: {apiVersion: v1, kind: ConfigMap, name: kafka-broker-config, namespace: knative-eventing}}
service: {create: true, image: registry.example.com/adh@sha256:0123}
oidc: {required: true, eventPolicy: true}
networkPolicy: {enabled: true}
notifications: {trigger: {enabled: true, subscriber: {uri: "http://slack-relay.ops.svc"}}}
`, map[string]int{"Service": 1, "NetworkPolicy": 1, "EventPolicy": 1, "IntegrationSource": 1, "Trigger": 8}},
}

// TestChartInstall installs the CRDs of Knative eventing and serving v0.50.0 (from their Go
// modules' config folders) next to the Argo CRDs into the real API server. Then, for each case,
// every object the chart renders goes as a server-side dry run with strict field validation (each
// must pass the CRD schemas and the API server's validation), and the Helm CLI installs the chart,
// upgrades it with other values, upgrades it back and uninstalls it, as docs/install.md says:
// what each step must create, change and remove, and what stays behind. (Knative's controllers
// and webhooks do not run here: the objects are stored, not acted on.)
func TestChartInstall(t *testing.T) {
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

	for _, tc := range chartCases {
		t.Run("dry run/"+tc.name, func(t *testing.T) {
			objs, err := manifests.Render(tc.namespace, tc.values)
			if err != nil {
				t.Fatal(err)
			}
			createNamespace(ctx, t, dyn, tc.namespace)
			m := mapperFor(ctx, t, c, objs)
			kinds := map[string]int{}
			for _, obj := range objs {
				if err := dryRunApply(ctx, resourceFor(t, dyn, m, obj), obj); err != nil {
					t.Errorf("%s %s/%s refused: %v", obj.GetKind(), obj.GetNamespace(), obj.GetName(), err)
					continue
				}
				kinds[obj.GetKind()]++
			}
			t.Logf("%s: all %d objects accepted by a server-side dry run: %v", tc.name, len(objs), kinds)
			for kind, n := range tc.mustShip {
				if kinds[kind] != n {
					t.Errorf("%s: %d %s accepted, want %d", tc.name, kinds[kind], kind, n)
				}
			}
		})
	}

	// The dry run does check: a misspelt field in the Service and a wrong type in the PingSource
	// are refused (the schemas; Knative's webhooks, which would check more, do not run here).
	objs, err := manifests.Render(chartCases[1].namespace, chartCases[1].values)
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

	t.Run("install, upgrade, uninstall", func(t *testing.T) { installUpgradeUninstall(ctx, t, c) })
}

// createNamespace creates ns for real (a dry-run namespace does not make its objects admissible).
func createNamespace(ctx context.Context, t *testing.T, dyn dynamic.Interface, ns string) {
	t.Helper()
	obj := &unstructured.Unstructured{}
	obj.SetAPIVersion("v1")
	obj.SetKind("Namespace")
	obj.SetName(ns)
	if _, err := dyn.Resource(schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}).Create(ctx, obj, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// helmOn runs the Helm CLI against the local cluster.
func helmOn(t *testing.T, c *localcluster.Cluster, args ...string) string {
	t.Helper()
	out, err := manifests.Run(append(args, "--kubeconfig", c.Kubeconfig())...)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	t.Logf("helm %s:\n%s", strings.Join(args[:min(len(args), 2)], " "), strings.TrimSpace(string(out)))
	return string(out)
}

// installUpgradeUninstall runs the README's install, an upgrade that turns parts on and changes
// the scope, an upgrade back to the defaults, and the uninstall, with the Helm CLI.
func installUpgradeUninstall(ctx context.Context, t *testing.T, c *localcluster.Cluster) {
	const ns, release = "adh-lifecycle", "argo-disruption-handler"
	dyn := c.Dynamic()
	get := func(gvr schema.GroupVersionResource, name string) (*unstructured.Unstructured, error) {
		return dyn.Resource(gvr).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	}
	cmGVR := schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}
	srcGVR := schema.GroupVersionResource{Group: "sources.knative.dev", Version: "v1", Resource: "apiserversources"}
	sqsGVR := schema.GroupVersionResource{Group: "sources.knative.dev", Version: "v1alpha1", Resource: "integrationsources"}
	npGVR := schema.GroupVersionResource{Group: "networking.k8s.io", Version: "v1", Resource: "networkpolicies"}
	setting := func(key string) string {
		cm, err := get(cmGVR, "argo-disruption-handler-settings")
		if err != nil {
			t.Fatalf("settings ConfigMap: %v", err)
		}
		v, _, _ := unstructured.NestedString(cm.Object, "data", key)
		return v
	}

	helmOn(t, c, "install", release, manifests.ChartDir(), "--namespace", ns, "--create-namespace")
	if got := setting("ADH_STATE_NAMESPACE"); got != ns {
		t.Errorf("installed: ADH_STATE_NAMESPACE %q, want the release namespace %s", got, ns)
	}
	if _, err := get(srcGVR, "workflow-pods"); err != nil {
		t.Errorf("installed: workflow-pods source: %v", err)
	}

	// Not t.TempDir(): helm splits -f on commas, which subtest names put in that path.
	dir, err := os.MkdirTemp("", "adh-values-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	args, err := manifests.ValuesFiles(dir, `
namespaces: [team-a]
sources:
  sqs: {enabled: true, arn: "arn:aws:sqs:eu-west-1:123456789012:adh", region: eu-west-1, secretName: aws}
networkPolicy: {enabled: true}
`)
	if err != nil {
		t.Fatal(err)
	}
	helmOn(t, c, append([]string{"upgrade", release, manifests.ChartDir(), "--namespace", ns}, args...)...)
	if got := setting("ADH_NAMESPACES"); got != "team-a" {
		t.Errorf("upgraded: ADH_NAMESPACES %q, want team-a", got)
	}
	src, err := get(srcGVR, "workflow-pods")
	if err != nil {
		t.Fatal(err)
	}
	if vals, _, _ := unstructured.NestedSlice(src.Object, "spec", "namespaceSelector", "matchExpressions"); len(vals) != 1 ||
		!reflect.DeepEqual(vals[0].(map[string]any)["values"], []any{"team-a"}) {
		t.Errorf("upgraded: workflow-pods namespaceSelector %v, want team-a", vals)
	}
	for name, gvr := range map[string]schema.GroupVersionResource{"ec2-interruptions": sqsGVR, "argo-disruption-handler": npGVR} {
		if _, err := get(gvr, name); err != nil {
			t.Errorf("upgraded: %s %s: %v", gvr.Resource, name, err)
		}
	}

	// What the function itself creates at run time: the sweep's Lease.
	lease := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
		"metadata": map[string]any{"name": "argo-disruption-handler-sweep", "namespace": ns}}}
	leaseGVR := schema.GroupVersionResource{Group: "coordination.k8s.io", Version: "v1", Resource: "leases"}
	if _, err := dyn.Resource(leaseGVR).Namespace(ns).Create(ctx, lease, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	helmOn(t, c, "upgrade", release, manifests.ChartDir(), "--namespace", ns, "--reset-values")
	for name, gvr := range map[string]schema.GroupVersionResource{"ec2-interruptions": sqsGVR, "argo-disruption-handler": npGVR} {
		if _, err := get(gvr, name); !apierrors.IsNotFound(err) {
			t.Errorf("upgraded back: %s %s still there (%v)", gvr.Resource, name, err)
		}
	}
	if got := setting("ADH_NAMESPACES"); got != "" {
		t.Errorf("upgraded back: ADH_NAMESPACES %q, want empty", got)
	}

	helmOn(t, c, "uninstall", release, "--namespace", ns)
	for _, gvr := range []schema.GroupVersionResource{cmGVR, srcGVR,
		{Group: "eventing.knative.dev", Version: "v1", Resource: "triggers"}, {Group: "eventing.knative.dev", Version: "v1", Resource: "brokers"},
		{Group: "sources.knative.dev", Version: "v1", Resource: "pingsources"}, {Group: "sources.knative.dev", Version: "v1", Resource: "sinkbindings"},
		{Version: "v1", Resource: "serviceaccounts"}, {Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "rolebindings"}} {
		list, err := dyn.Resource(gvr).Namespace(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/instance=" + release})
		if err != nil {
			t.Fatal(err)
		}
		if len(list.Items) != 0 {
			t.Errorf("uninstalled: %d %s left", len(list.Items), gvr.Resource)
		}
	}
	for _, name := range []string{"argo-disruption-handler", "argo-disruption-handler-sources"} {
		_, err := dyn.Resource(schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterroles"}).Get(ctx, name, metav1.GetOptions{})
		if !apierrors.IsNotFound(err) {
			t.Errorf("uninstalled: ClusterRole %s still there (%v)", name, err)
		}
	}
	// docs/install.md lists what stays: the namespace and the sweep's Lease.
	if _, err := dyn.Resource(leaseGVR).Namespace(ns).Get(ctx, "argo-disruption-handler-sweep", metav1.GetOptions{}); err != nil {
		t.Errorf("uninstalled: the sweep's Lease is gone (%v); docs/install.md says it stays", err)
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

// readObjects splits a YAML file into objects.
func readObjects(t *testing.T, path string) []*unstructured.Unstructured {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return splitYAML(t, b)
}
