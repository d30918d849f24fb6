package deploy

import (
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kelseyhightower/envconfig"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"function/config"
	"function/internal/manifests"
	"function/internal/sweep"
)

// funcYAML is the part of func.yaml the manifests must agree with.
type funcYAML struct {
	Name string `json:"name"`
	Run  struct {
		Envs []struct{ Name, Value string } `json:"envs"`
	} `json:"run"`
	Deploy struct {
		Namespace          string            `json:"namespace"`
		ServiceAccountName string            `json:"serviceAccountName"`
		Annotations        map[string]string `json:"annotations"`
		Labels             []struct {
			Key, Value string
		} `json:"labels"`
		Options struct {
			// func deploy writes these as the container's resources.
			Resources map[string]map[string]string `json:"resources"`
		} `json:"options"`
		HealthEndpoints struct {
			Liveness  string `json:"liveness"`
			Readiness string `json:"readiness"`
		} `json:"healthEndpoints"`
		Subscriptions []struct {
			Source  string            `json:"source"`
			Filters map[string]string `json:"filters"`
		} `json:"subscriptions"`
	} `json:"deploy"`
}

func readFuncYAML(t *testing.T) funcYAML {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(manifests.Dir(), "..", "func.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var f funcYAML
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("func.yaml: %v", err)
	}
	if f.Name == "" || f.Deploy.Namespace == "" || f.Deploy.ServiceAccountName == "" {
		t.Fatalf("func.yaml lacks name, deploy.namespace or deploy.serviceAccountName: %+v", f)
	}
	return f
}

// needHelm skips t without the Helm CLI, except in CI, where the test command builds it first.
func needHelm(t *testing.T) {
	t.Helper()
	if _, err := manifests.Helm(); err != nil && os.Getenv("CI") == "" {
		t.Skip(err)
	}
}

// render renders the chart released into namespace with the values documents.
func render(t *testing.T, namespace string, values ...string) []*unstructured.Unstructured {
	t.Helper()
	needHelm(t)
	objs, err := manifests.Render(namespace, values...)
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) == 0 {
		t.Fatalf("the chart renders no object")
	}
	return objs
}

// defaults renders the chart as the README installs it, with no values.
func defaults(t *testing.T) []*unstructured.Unstructured {
	return render(t, manifests.Namespace)
}

// fullNamespace and fullValues: every optional part on and every scope setting away from its
// default, released into another namespace than func.yaml's.
const fullNamespace = "ops"

const fullValues = `
namespaces: [team-a, team-b]
instanceID: ci
dryRun: true
sources:
  sqs: {enabled: true, arn: "arn:aws:sqs:eu-west-1:123456789012:adh", region: eu-west-1, serviceAccountName: adh-sqs}
service: {create: true, image: registry.example.com/adh@sha256:0123}
oidc: {required: true, eventPolicy: true}
networkPolicy: {enabled: true}
monitoring: {podMonitor: {enabled: true}, prometheusRule: {enabled: true}, dashboard: {enabled: true}}
notifications: {trigger: {enabled: true, subscriber: {uri: "http://slack-relay.ops.svc"}}}
`

// full renders fullValues into fullNamespace.
func full(t *testing.T) []*unstructured.Unstructured {
	return render(t, fullNamespace, fullValues)
}

// withService renders the defaults plus the chart's own Knative Service.
func withService(t *testing.T, values ...string) []*unstructured.Unstructured {
	return render(t, manifests.Namespace, append([]string{"service: {create: true, image: registry.example.com/adh:1}"}, values...)...)
}

// rbacRule is one verb the function's ClusterRole grants, and why the code needs it.
type rbacRule struct{ group, resource, verb, reason string }

// functionRules is exactly what the chart's templates/rbac-function.yaml must grant (and the README's RBAC
// table list): nothing more, nothing less.
var functionRules = []rbacRule{
	{"argoproj.io", "workflows", "get", "read the workflow of a deleted pod (scope, phase, nodes, the task-result gate)"},
	{"argoproj.io", "workflows", "list", "sweep: Running workflows, label workflows.argoproj.io/phase=Running, paginated"},
	{"argoproj.io", "workflows", "patch", "record annotations; last-resort node Error (ladder step 4)"},
	{"argoproj.io", "workflowtaskresults", "get", "the task result of the node whose pod is gone"},
	{"argoproj.io", "workflowtaskresults", "list", "locate a pod known only by name; sweep"},
	{"argoproj.io", "workflowtaskresults", "create", "ladder step 2: re-create a missing task result, complete"},
	{"argoproj.io", "workflowtaskresults", "patch", "ladder step 1: label report-outputs-completed true"},
	{"", "pods", "get", "is the pod really gone, or re-created under the same name"},
	{"", "pods", "list", "workflow pods on a gone Node (field selector spec.nodeName)"},
	{"", "pods", "patch", "ladder step 3: release the workflows.argoproj.io/status finalizer; warning annotation"},
	{"", "pods", "delete", "force-delete the orphaned pod of a machine confirmed terminated"},
	{"", "nodes", "get", "does the pod's Node still exist"},
	{"", "nodes", "list", "EC2 instance id -> Node via spec.providerID"},
	{"karpenter.sh", "nodeclaims", "get", "NodeClaim -> Node"},
	{"karpenter.sh", "nodeclaims", "list", "EC2 instance id -> Node via NodeClaims"},
	{"", "events", "create", "Kubernetes Events on the Workflow"},
	{"authentication.k8s.io", "tokenreviews", "create", "verify a sender's OIDC bearer token"},
}

// sourceRules is what the ApiServerSources' identity must grant: watch what they watch.
var sourceRules = []rbacRule{
	{"", "pods", "get", ""}, {"", "pods", "list", ""}, {"", "pods", "watch", ""},
	{"", "events", "get", ""}, {"", "events", "list", ""}, {"", "events", "watch", ""},
	{"", "nodes", "get", ""}, {"", "nodes", "list", ""}, {"", "nodes", "watch", ""},
	{"karpenter.sh", "nodeclaims", "get", ""}, {"karpenter.sh", "nodeclaims", "list", ""}, {"karpenter.sh", "nodeclaims", "watch", ""},
}

func ruleKey(group, resource, verb string) string { return group + "/" + resource + ":" + verb }

// grants flattens a ClusterRole's rules into group/resource:verb keys, failing on anything
// broader than a plain list (wildcards, resourceNames, nonResourceURLs).
func grants(t *testing.T, role *unstructured.Unstructured) []string {
	t.Helper()
	rules, _, _ := unstructured.NestedSlice(role.Object, "rules")
	var out []string
	for i, r := range rules {
		m := r.(map[string]any)
		for _, f := range []string{"resourceNames", "nonResourceURLs"} {
			if _, ok := m[f]; ok {
				t.Errorf("ClusterRole %s rule %d has %s", role.GetName(), i, f)
			}
		}
		groups, _, _ := unstructured.NestedStringSlice(m, "apiGroups")
		resources, _, _ := unstructured.NestedStringSlice(m, "resources")
		verbs, _, _ := unstructured.NestedStringSlice(m, "verbs")
		for _, g := range groups {
			for _, res := range resources {
				for _, v := range verbs {
					if g == "*" || res == "*" || v == "*" || strings.Contains(res, "/") {
						t.Errorf("ClusterRole %s rule %d grants %q (wildcard or subresource)", role.GetName(), i, ruleKey(g, res, v))
					}
					out = append(out, ruleKey(g, res, v))
				}
			}
		}
	}
	slices.Sort(out)
	return out
}

func keys(rules []rbacRule) []string {
	var out []string
	for _, r := range rules {
		out = append(out, ruleKey(r.group, r.resource, r.verb))
	}
	slices.Sort(out)
	return out
}

// TestFunctionClusterRoleIsExact: the function's ClusterRole grants exactly functionRules, each
// verb with its reason written beside it in the YAML, and is bound to the function's identity.
func TestFunctionClusterRoleIsExact(t *testing.T) {
	f := readFuncYAML(t)
	objs := defaults(t)
	role := manifests.Find(objs, "ClusterRole", f.Name)
	if role == nil {
		t.Fatalf("no ClusterRole %s in the chart", f.Name)
	}
	got, want := grants(t, role), keys(functionRules)
	if !slices.Equal(got, want) {
		t.Errorf("ClusterRole %s grants\n  %v\nwant exactly\n  %v\n(add the rule and its reason to functionRules and the README's RBAC table, or drop it)", f.Name, got, want)
	}
	if dup := slices.Compact(slices.Clone(got)); len(dup) != len(got) {
		t.Errorf("ClusterRole %s repeats a grant: %v", f.Name, got)
	}
	for _, r := range functionRules {
		if r.reason == "" {
			t.Errorf("%s has no reason", ruleKey(r.group, r.resource, r.verb))
		}
	}
	// Each verb line of the role carries its one-line reason as a YAML comment.
	b, err := os.ReadFile(filepath.Join(manifests.ChartDir(), "templates", "rbac-function.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	verbLine := regexp.MustCompile(`^\s+- (get|list|watch|create|update|patch|delete|deletecollection)\b(.*)$`)
	for _, line := range strings.Split(string(b), "\n") {
		if m := verbLine.FindStringSubmatch(line); m != nil && !strings.HasPrefix(strings.TrimSpace(m[2]), "# ") {
			t.Errorf("rbac-function.yaml: verb without its reason: %q", line)
		}
	}
	checkBinding(t, objs, f.Name, f.Name, f.Deploy.Namespace, f.Deploy.ServiceAccountName)
}

// checkBinding: a ClusterRoleBinding binds role to exactly the ServiceAccount ns/sa, which the
// chart creates.
func checkBinding(t *testing.T, objs []*unstructured.Unstructured, binding, role, ns, sa string) {
	t.Helper()
	crb := manifests.Find(objs, "ClusterRoleBinding", binding)
	if crb == nil {
		t.Fatalf("no ClusterRoleBinding %s", binding)
	}
	ref, _, _ := unstructured.NestedStringMap(crb.Object, "roleRef")
	if ref["kind"] != "ClusterRole" || ref["name"] != role {
		t.Errorf("ClusterRoleBinding %s roleRef = %v, want ClusterRole %s", binding, ref, role)
	}
	subjects, _, _ := unstructured.NestedSlice(crb.Object, "subjects")
	want := []any{map[string]any{"kind": "ServiceAccount", "name": sa, "namespace": ns}}
	if !reflect.DeepEqual(subjects, want) {
		t.Errorf("ClusterRoleBinding %s subjects = %v, want %v", binding, subjects, want)
	}
	if acct := manifests.Find(objs, "ServiceAccount", sa); acct == nil || acct.GetNamespace() != ns {
		t.Errorf("ServiceAccount %s/%s not created", ns, sa)
	}
}

// TestSourcesRBACCoversTheirResources: the ApiServerSources run as their own identity, which may
// get/list/watch exactly the kinds they watch, with Karpenter's sources on and off.
func TestSourcesRBACCoversTheirResources(t *testing.T) {
	f := readFuncYAML(t)
	const sa = "argo-disruption-handler-sources"
	for _, tc := range []struct {
		name    string
		values  []string
		sources int
		rules   []rbacRule
	}{
		{"karpenter on (default)", nil, 3, sourceRules},
		{"karpenter off", []string{"sources: {karpenter: {enabled: false}}"}, 2, sourceRules[:9]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs := render(t, manifests.Namespace, tc.values...)
			role := manifests.Find(objs, "ClusterRole", sa)
			if role == nil {
				t.Fatalf("no ClusterRole %s", sa)
			}
			if got, want := grants(t, role), keys(tc.rules); !slices.Equal(got, want) {
				t.Errorf("ClusterRole %s grants %v, want exactly %v", sa, got, want)
			}
			checkBinding(t, objs, sa, sa, f.Deploy.Namespace, sa)
			resourceOf := map[string]string{"v1/Pod": "/pods", "v1/Event": "/events", "v1/Node": "/nodes", "karpenter.sh/v1/NodeClaim": "karpenter.sh/nodeclaims"}
			granted := map[string]bool{}
			for _, k := range grants(t, role) {
				granted[k] = true
			}
			n := 0
			for _, o := range objs {
				if o.GetKind() != "ApiServerSource" {
					continue
				}
				n++
				if got, _, _ := unstructured.NestedString(o.Object, "spec", "serviceAccountName"); got != sa {
					t.Errorf("ApiServerSource %s runs as %q, want %s", o.GetName(), got, sa)
				}
				resources, _, _ := unstructured.NestedSlice(o.Object, "spec", "resources")
				for _, r := range resources {
					m := r.(map[string]any)
					gr, ok := resourceOf[m["apiVersion"].(string)+"/"+m["kind"].(string)]
					if !ok {
						t.Errorf("ApiServerSource %s watches %v/%v: not in this test's table", o.GetName(), m["apiVersion"], m["kind"])
						continue
					}
					for _, v := range []string{"get", "list", "watch"} {
						if !granted[gr+":"+v] {
							t.Errorf("ApiServerSource %s watches %s without %s", o.GetName(), gr, v)
						}
					}
				}
			}
			if n != tc.sources {
				t.Errorf("%d ApiServerSources, want %d", n, tc.sources)
			}
		})
	}
}

// TestEventingWiring: one Broker; every source sinks to it; every Trigger but the notification
// ones goes from it to the function's Service; no two Triggers (or a func.yaml subscription) share
// a filter; the sweep's PingSource and its Trigger exist; the function's own notifications match
// none of its Triggers (no loop).
func TestEventingWiring(t *testing.T) {
	f := readFuncYAML(t)
	objs := full(t)
	b := manifests.Find(objs, "Broker", "default")
	if b == nil {
		t.Fatal("no Broker default")
	}
	// Delivery is configured, not assumed: retries with backoff, and a dead-letter sink that is
	// the function's own Service (which logs and counts dead letters).
	if retry, _, _ := unstructured.NestedInt64(b.Object, "spec", "delivery", "retry"); retry < 1 {
		t.Errorf("Broker delivery retry = %d", retry)
	}
	if p, _, _ := unstructured.NestedString(b.Object, "spec", "delivery", "backoffPolicy"); p != "exponential" {
		t.Errorf("Broker delivery backoffPolicy = %q", p)
	}
	if dls, _, _ := unstructured.NestedStringMap(b.Object, "spec", "delivery", "deadLetterSink", "ref"); dls["kind"] != "Service" || dls["name"] != "argo-disruption-handler" {
		t.Errorf("Broker deadLetterSink = %v, want the function's Service", dls)
	}
	filters := map[string]string{}
	for _, o := range objs {
		switch o.GetKind() {
		case "ApiServerSource", "IntegrationSource", "PingSource", "SinkBinding":
			sink, _, _ := unstructured.NestedStringMap(o.Object, "spec", "sink", "ref")
			if sink["kind"] != "Broker" || sink["name"] != "default" || sink["apiVersion"] != "eventing.knative.dev/v1" {
				t.Errorf("%s %s sinks to %v, want Broker default", o.GetKind(), o.GetName(), sink)
			}
		case "Trigger":
			if b, _, _ := unstructured.NestedString(o.Object, "spec", "broker"); b != "default" {
				t.Errorf("Trigger %s on broker %q", o.GetName(), b)
			}
			if strings.HasSuffix(o.GetName(), "-notifications") {
				checkNotificationTrigger(t, o)
				continue
			}
			sub, _, _ := unstructured.NestedStringMap(o.Object, "spec", "subscriber", "ref")
			want := map[string]string{"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": f.Name}
			if sub["namespace"] == f.Deploy.Namespace {
				want["namespace"] = f.Deploy.Namespace
			}
			if !maps.Equal(sub, want) {
				t.Errorf("Trigger %s subscriber = %v, want %v", o.GetName(), sub, want)
			}
			attrs, _, _ := unstructured.NestedStringMap(o.Object, "spec", "filter", "attributes")
			if len(attrs) == 0 {
				t.Errorf("Trigger %s has no filter: every event of the broker would reach the function", o.GetName())
			}
			key := filterKey(attrs)
			if prev, ok := filters[key]; ok {
				t.Errorf("Triggers %s and %s have the same filter %s: events delivered twice", prev, o.GetName(), key)
			}
			filters[key] = "Trigger " + o.GetName()
		}
	}
	for _, s := range f.Deploy.Subscriptions {
		if prev, ok := filters[filterKey(s.Filters)]; ok {
			t.Errorf("func.yaml subscription %v duplicates %s: events delivered twice", s.Filters, prev)
		}
	}
	for _, want := range []map[string]string{
		{"type": "dev.knative.apiserver.resource.delete", "kind": "Pod"}, {"kind": "Event"},
		{"type": "dev.knative.apiserver.resource.delete", "kind": "Node"},
		{"type": "dev.knative.apiserver.resource.delete", "kind": "NodeClaim"},
		{"type": "dev.knative.connector.event.aws-sqs"},
		{"type": "dev.knative.sources.ping"},
	} {
		if _, ok := filters[filterKey(want)]; !ok {
			t.Errorf("no Trigger with filter %v", want)
		}
	}
	ping := manifests.Find(objs, "PingSource", "sweep")
	if ping == nil {
		t.Fatal("no PingSource sweep")
	}
	if s, _, _ := unstructured.NestedString(ping.Object, "spec", "schedule"); s != "*/10 * * * *" {
		t.Errorf("PingSource schedule %q", s)
	}
	pods := manifests.Find(objs, "ApiServerSource", "workflow-pods")
	if pods == nil {
		t.Fatal("no ApiServerSource workflow-pods")
	}
	if mode, _, _ := unstructured.NestedString(pods.Object, "spec", "mode"); mode != "Resource" {
		t.Errorf("workflow-pods mode %q, want Resource", mode)
	}
	res, _, _ := unstructured.NestedSlice(pods.Object, "spec", "resources")
	want := []any{map[string]any{"apiVersion": "v1", "kind": "Pod", "selector": map[string]any{
		"matchExpressions": []any{map[string]any{"key": "workflows.argoproj.io/workflow", "operator": "Exists"}}}}}
	if !reflect.DeepEqual(res, want) {
		t.Errorf("workflow-pods resources = %v, want %v", res, want)
	}
	if _, ok, _ := unstructured.NestedMap(pods.Object, "spec", "namespaceSelector"); !ok {
		t.Error("workflow-pods has no namespaceSelector")
	}
}

// notificationTypes are the types of the function's own CloudEvents (internal/notify).
var notificationTypes = []string{"dev.argo-disruption-handler.repair.v1", "dev.argo-disruption-handler.warning.v1"}

// checkNotificationTrigger: a notification Trigger takes one of the function's own types to the
// user's subscriber, never to the function.
func checkNotificationTrigger(t *testing.T, o *unstructured.Unstructured) {
	t.Helper()
	attrs, _, _ := unstructured.NestedStringMap(o.Object, "spec", "filter", "attributes")
	if len(attrs) != 1 || !slices.Contains(notificationTypes, attrs["type"]) {
		t.Errorf("notification Trigger %s filter %v, want one of the types %v", o.GetName(), attrs, notificationTypes)
	}
	if uri, _, _ := unstructured.NestedString(o.Object, "spec", "subscriber", "uri"); uri != "http://slack-relay.ops.svc" {
		t.Errorf("notification Trigger %s subscriber uri %q, want the values' subscriber", o.GetName(), uri)
	}
}

// TestNotificationsMatchNoFunctionTrigger: an event the function emits (its type, no "kind"
// extension) passes none of the Triggers that deliver to the function.
func TestNotificationsMatchNoFunctionTrigger(t *testing.T) {
	for _, o := range full(t) {
		if o.GetKind() != "Trigger" || strings.HasSuffix(o.GetName(), "-notifications") {
			continue
		}
		attrs, _, _ := unstructured.NestedStringMap(o.Object, "spec", "filter", "attributes")
		for _, typ := range notificationTypes {
			event := map[string]string{"type": typ, "source": "argo-disruption-handler/ops"}
			match := true
			for k, v := range attrs {
				match = match && event[k] == v
			}
			if match {
				t.Errorf("Trigger %s (filter %v) would deliver the function's own %s back to it", o.GetName(), attrs, typ)
			}
		}
	}
}

func filterKey(attrs map[string]string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(attrs)) {
		parts = append(parts, k+"="+attrs[k])
	}
	return strings.Join(parts, ",")
}

// TestServiceAgreesWithFuncYAML: the Knative Service the chart renders (service.create) says what
// func.yaml says (name, namespace, ServiceAccount, annotations, labels, resources, health
// endpoints), and both take every setting from the chart's settings ConfigMap.
func TestServiceAgreesWithFuncYAML(t *testing.T) {
	f := readFuncYAML(t)
	wantEnvs := []struct{ Name, Value string }{{"", "{{ configMap:argo-disruption-handler-settings }}"}}
	if !reflect.DeepEqual(f.Run.Envs, wantEnvs) {
		t.Errorf("func.yaml run.envs %v, want only the settings ConfigMap %v (every setting in one place: the chart's values)", f.Run.Envs, wantEnvs)
	}
	if f.Deploy.Namespace != manifests.Namespace {
		t.Errorf("func.yaml deploy.namespace %q, the README installs the chart into %q", f.Deploy.Namespace, manifests.Namespace)
	}
	objs := withService(t)
	if manifests.Find(objs, "ConfigMap", "argo-disruption-handler-settings") == nil {
		t.Fatal("the chart renders no ConfigMap argo-disruption-handler-settings")
	}
	for _, o := range objs {
		cluster := map[string]bool{"ClusterRole": true, "ClusterRoleBinding": true}[o.GetKind()]
		if !cluster && o.GetNamespace() != f.Deploy.Namespace {
			t.Errorf("%s %s in namespace %q, want %s", o.GetKind(), o.GetName(), o.GetNamespace(), f.Deploy.Namespace)
		}
	}
	svc := manifests.Find(objs, "Service", f.Name)
	if svc == nil || svc.GetAPIVersion() != "serving.knative.dev/v1" {
		t.Fatalf("no serving.knative.dev/v1 Service %s", f.Name)
	}
	tmpl := svc.Object["spec"].(map[string]any)["template"].(map[string]any)
	if sa, _, _ := unstructured.NestedString(tmpl, "spec", "serviceAccountName"); sa != f.Deploy.ServiceAccountName {
		t.Errorf("Service runs as %q, func.yaml as %q", sa, f.Deploy.ServiceAccountName)
	}
	ann, _, _ := unstructured.NestedStringMap(tmpl, "metadata", "annotations")
	if ann[settingsChecksum] == "" {
		t.Errorf("revision annotations lack %s: a settings change would not roll the pods", settingsChecksum)
	}
	delete(ann, settingsChecksum)
	if !maps.Equal(ann, f.Deploy.Annotations) {
		t.Errorf("revision annotations %v, func.yaml deploy.annotations %v", ann, f.Deploy.Annotations)
	}
	containers, _, _ := unstructured.NestedSlice(tmpl, "spec", "containers")
	if len(containers) != 1 {
		t.Fatalf("%d containers", len(containers))
	}
	c := containers[0].(map[string]any)
	envFrom, _, _ := unstructured.NestedSlice(c, "envFrom")
	if want := []any{map[string]any{"configMapRef": map[string]any{"name": "argo-disruption-handler-settings"}}}; !reflect.DeepEqual(envFrom, want) {
		t.Errorf("container envFrom %v, want %v", envFrom, want)
	}
	envs, _, _ := unstructured.NestedSlice(c, "env")
	if want := []any{map[string]any{"name": "LISTEN_ADDRESS", "value": "0.0.0.0:8080"}}; !reflect.DeepEqual(envs, want) {
		t.Errorf("container env %v, want only LISTEN_ADDRESS=0.0.0.0:8080 (func-go would listen on 127.0.0.1 only)", envs)
	}
	res, _, _ := unstructured.NestedMap(c, "resources")
	if fmt.Sprint(res) != fmt.Sprint(f.Deploy.Options.Resources) {
		t.Errorf("container resources %v, func.yaml deploy.options.resources %v", res, f.Deploy.Options.Resources)
	}
	for _, l := range f.Deploy.Labels {
		if svc.GetLabels()[l.Key] != l.Value {
			t.Errorf("Service label %s = %q, func.yaml deploy.labels %q", l.Key, svc.GetLabels()[l.Key], l.Value)
		}
	}
	for probe, p := range map[string]string{"livenessProbe": f.Deploy.HealthEndpoints.Liveness, "readinessProbe": f.Deploy.HealthEndpoints.Readiness} {
		if got, _, _ := unstructured.NestedString(c, probe, "httpGet", "path"); got != p {
			t.Errorf("%s path %q, func.yaml %q", probe, got, p)
		}
	}
}

const settingsChecksum = "argo-disruption-handler/settings-checksum"

// TestSettingsChangeRollsTheService: the revision template carries a checksum of the settings,
// so `helm upgrade` with other values starts pods that read them.
func TestSettingsChangeRollsTheService(t *testing.T) {
	checksum := func(values ...string) string {
		svc := manifests.Find(withService(t, values...), "Service", "argo-disruption-handler")
		v, _, _ := unstructured.NestedString(svc.Object, "spec", "template", "metadata", "annotations", settingsChecksum)
		return v
	}
	base := checksum()
	if base == "" || checksum("dryRun: true") == base || checksum("namespaces: [team-a]") == base {
		t.Error("the settings checksum does not change with the settings")
	}
	if checksum("service: {maxScale: 9}") != base {
		t.Error("the settings checksum changes with a value that is not a setting")
	}
}

// settings returns the data of the rendered settings ConfigMap.
func settings(t *testing.T, objs []*unstructured.Unstructured) map[string]string {
	t.Helper()
	cm := manifests.Find(objs, "ConfigMap", "argo-disruption-handler-settings")
	if cm == nil {
		t.Fatal("no ConfigMap argo-disruption-handler-settings")
	}
	data, _, err := unstructured.NestedStringMap(cm.Object, "data")
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// loadSettings reads config.Config from exactly these environment variables, as the function does
// in its pod.
func loadSettings(t *testing.T, env map[string]string) config.Config {
	t.Helper()
	for name := range configVariables() {
		t.Setenv(name, "")
		os.Unsetenv(name)
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	cfg, err := config.Load()
	if err != nil {
		t.Fatalf("the function refuses the rendered settings: %v", err)
	}
	return *cfg
}

// TestSettingsAreTheFunctionsDefaults: the ConfigMap sets every variable config.Config reads, no
// other, and with the chart's default values the function runs exactly as with no setting at all.
func TestSettingsAreTheFunctionsDefaults(t *testing.T) {
	data := settings(t, defaults(t))
	known := configVariables()
	for name := range known {
		if _, ok := data[name]; !ok {
			t.Errorf("the settings ConfigMap lacks %s (add a value for it to deploy/chart/values.yaml)", name)
		}
	}
	for name := range data {
		if !known[name] {
			t.Errorf("the settings ConfigMap sets %s, which config.Config does not read", name)
		}
	}
	if got, want := loadSettings(t, data), loadSettings(t, nil); !reflect.DeepEqual(got, want) {
		t.Errorf("the chart's defaults configure\n  %+v\nthe function's defaults are\n  %+v", got, want)
	}
}

// TestValuesLandEverywhere: non-default values reach every object that needs them: the namespaces
// the function's settings and the workflow-pods source; the release namespace every namespaced
// object, RBAC subject, the Lease's namespace and the OIDC audience and subjects; each optional
// part exactly when switched on.
func TestValuesLandEverywhere(t *testing.T) {
	objs := full(t)
	data := settings(t, objs)
	cfg := loadSettings(t, data)
	audience := "serving.knative.dev/service/" + fullNamespace + "/argo-disruption-handler"
	if !slices.Equal(cfg.Namespaces, []string{"team-a", "team-b"}) || cfg.ControllerInstanceID != "ci" || !cfg.DryRun ||
		!cfg.OIDCRequired || cfg.StateNamespace != fullNamespace || cfg.OIDCAudience != audience ||
		!slices.Equal(cfg.OIDCSubjects, []string{"system:serviceaccount:" + fullNamespace + ":*-oidc-eventing.knative.dev-trigger"}) {
		t.Errorf("the function reads %+v from the full values", cfg)
	}
	pods := manifests.Find(objs, "ApiServerSource", "workflow-pods")
	sel, _, _ := unstructured.NestedSlice(pods.Object, "spec", "namespaceSelector", "matchExpressions")
	wantSel := []any{map[string]any{"key": "kubernetes.io/metadata.name", "operator": "In", "values": []any{"team-a", "team-b"}}}
	if !reflect.DeepEqual(sel, wantSel) {
		t.Errorf("workflow-pods namespaceSelector %v, want %v", sel, wantSel)
	}
	for _, o := range objs {
		switch o.GetKind() {
		case "ClusterRole":
		case "ClusterRoleBinding", "RoleBinding":
			subjects, _, _ := unstructured.NestedSlice(o.Object, "subjects")
			for _, sub := range subjects {
				if ns := sub.(map[string]any)["namespace"]; ns != fullNamespace {
					t.Errorf("%s %s binds a subject in %v, want %s", o.GetKind(), o.GetName(), ns, fullNamespace)
				}
			}
		case "Trigger":
			if strings.HasSuffix(o.GetName(), "-notifications") {
				continue
			}
			if aud, _, _ := unstructured.NestedString(o.Object, "spec", "subscriber", "audience"); aud != audience {
				t.Errorf("Trigger %s audience %q, want %q", o.GetName(), aud, audience)
			}
		}
		if o.GetKind() != "ClusterRole" && o.GetKind() != "ClusterRoleBinding" && o.GetNamespace() != fullNamespace {
			t.Errorf("%s %s in namespace %q, want the release's %s", o.GetKind(), o.GetName(), o.GetNamespace(), fullNamespace)
		}
	}
	optional := map[string]string{
		"Service/argo-disruption-handler": "service.create", "NetworkPolicy/argo-disruption-handler": "networkPolicy.enabled",
		"EventPolicy/argo-disruption-handler-sources": "oidc.eventPolicy", "IntegrationSource/ec2-interruptions": "sources.sqs.enabled",
		"Trigger/ec2-interruptions": "sources.sqs.enabled", "PodMonitor/argo-disruption-handler": "monitoring.podMonitor.enabled",
		"PrometheusRule/argo-disruption-handler":                "monitoring.prometheusRule.enabled",
		"ConfigMap/argo-disruption-handler-dashboard":           "monitoring.dashboard.enabled",
		"Trigger/argo-disruption-handler-repair-notifications":  "notifications.trigger.enabled",
		"Trigger/argo-disruption-handler-warning-notifications": "notifications.trigger.enabled",
	}
	def := defaults(t)
	for key, value := range optional {
		kind, name, _ := strings.Cut(key, "/")
		if manifests.Find(objs, kind, name) == nil {
			t.Errorf("%s on: no %s", value, key)
		}
		if manifests.Find(def, kind, name) != nil {
			t.Errorf("%s is off by default, yet the chart renders %s", value, key)
		}
	}
	// The monitoring files arrive whole: the rule groups as YAML, the dashboard as JSON.
	rule := manifests.Find(objs, "PrometheusRule", "argo-disruption-handler")
	if groups, _, _ := unstructured.NestedSlice(rule.Object, "spec", "groups"); len(groups) == 0 {
		t.Error("the PrometheusRule has no rule group")
	}
	board := manifests.Find(objs, "ConfigMap", "argo-disruption-handler-dashboard")
	js, _, _ := unstructured.NestedString(board.Object, "data", "argo-disruption-handler.json")
	var dashboard struct{ Panels []any }
	if err := json.Unmarshal([]byte(js), &dashboard); err != nil || len(dashboard.Panels) == 0 {
		t.Errorf("the dashboard ConfigMap holds no dashboard: %v", err)
	}
	// With no namespace listed, the pods source watches every namespace but the excluded ones.
	pods = manifests.Find(def, "ApiServerSource", "workflow-pods")
	sel, _, _ = unstructured.NestedSlice(pods.Object, "spec", "namespaceSelector", "matchExpressions")
	wantSel = []any{map[string]any{"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": []any{"kube-system"}}}
	if !reflect.DeepEqual(sel, wantSel) {
		t.Errorf("default workflow-pods namespaceSelector %v, want %v", sel, wantSel)
	}
}

// TestChartLints: `helm lint --strict` passes with the defaults and with every part on.
func TestChartLints(t *testing.T) {
	for _, tc := range []struct{ name, values string }{{"defaults", ""}, {"full", fullValues}} {
		t.Run(tc.name, func(t *testing.T) {
			needHelm(t)
			args, err := manifests.ValuesFiles(t.TempDir(), tc.values)
			if err != nil {
				t.Fatal(err)
			}
			if out, err := manifests.Run(append([]string{"lint", "--strict", manifests.ChartDir()}, args...)...); err != nil {
				t.Errorf("%v\n%s", err, out)
			}
		})
	}
}

// TestValuesRefused: values the function could not run with are refused at install time, with a
// message naming the value, not discovered later in the function's log.
func TestValuesRefused(t *testing.T) {
	for _, tc := range []struct{ name, values, says string }{
		{"misspelt key", "namespace: [argo]", "namespace"},
		{"dry run as a string", `dryRun: "yes"`, "dryRun"},
		{"bad namespace name", "namespaces: [Argo_Team]", "namespaces"},
		{"duration without unit", "repair: {nodeErrorGrace: 60}", "nodeErrorGrace"},
		{"unknown log level", "logLevel: verbose", "logLevel"},
		{"sqs without queue", "sources: {sqs: {enabled: true, region: eu-west-1, secretName: aws}}", "arn"},
		{"sqs without credentials", `sources: {sqs: {enabled: true, arn: "arn:aws:sqs:eu-west-1:123456789012:q", region: eu-west-1}}`, "sqs"},
		{"service without image", "service: {create: true}", "image"},
		{"metrics on Knative's port", "metrics: {port: 9090}", "port"},
		{"trigger without notifications", "notifications: {enabled: false, trigger: {enabled: true, subscriber: {uri: http://x}}}", "notifications.enabled"},
		{"trigger without subscriber", "notifications: {trigger: {enabled: true}}", "subscriber"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			needHelm(t)
			_, err := manifests.Render(manifests.Namespace, tc.values)
			if err == nil || !strings.Contains(err.Error(), tc.says) {
				t.Errorf("values %q: err = %v, want a refusal naming %q", tc.values, err, tc.says)
			}
		})
	}
}

// configVariables are the environment variables config.Config reads.
func configVariables() map[string]bool {
	out := map[string]bool{}
	typ := reflect.TypeOf(config.Config{})
	for i := range typ.NumField() {
		if tag := typ.Field(i).Tag.Get("envconfig"); tag != "" {
			out[config.Prefix+"_"+tag] = true
		}
	}
	return out
}

// TestREADMERBACTable: the README's Permissions section lists each (group, resource) of the function's
// ClusterRole with exactly its verbs.
func TestREADMERBACTable(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(manifests.Dir(), "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	start := strings.Index(s, "\n## Permissions")
	if start < 0 {
		t.Fatal("README has no ## Permissions section")
	}
	s = s[start+1:]
	if end := strings.Index(s, "\n## "); end >= 0 {
		s = s[:end]
	}
	// | `argoproj.io` | `workflows` | get, list, patch | why |
	row := regexp.MustCompile("(?m)^\\| `([^`]*)` \\| `([^`]+)` \\| ([a-z, ]+) \\|")
	got := map[string][]string{}
	for _, m := range row.FindAllStringSubmatch(s, -1) {
		group := m[1]
		if group == "core" {
			group = ""
		}
		for _, v := range strings.Split(m[3], ",") {
			got[group+"/"+m[2]] = append(got[group+"/"+m[2]], strings.TrimSpace(v))
		}
	}
	want := map[string][]string{}
	for _, r := range functionRules {
		want[r.group+"/"+r.resource] = append(want[r.group+"/"+r.resource], r.verb)
	}
	for k := range want {
		slices.Sort(want[k])
	}
	for k := range got {
		slices.Sort(got[k])
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("README RBAC table:\n  %v\nthe ClusterRole:\n  %v", got, want)
	}
}

// TestSweepLeaseRole: the sweep's Lease is the function's only namespaced state, and its Role
// grants exactly what sweep.Lease calls — create any Lease (RBAC cannot narrow create to
// a name), get and update only the sweep's — bound to the function's ServiceAccount.
func TestSweepLeaseRole(t *testing.T) {
	f := readFuncYAML(t)
	objs := defaults(t)
	role := manifests.Find(objs, "Role", "argo-disruption-handler-sweep")
	if role == nil || role.GetNamespace() != f.Deploy.Namespace {
		t.Fatalf("no Role argo-disruption-handler-sweep in %s", f.Deploy.Namespace)
	}
	rules, _, _ := unstructured.NestedSlice(role.Object, "rules")
	var got []string
	for _, r := range rules {
		m := r.(map[string]any)
		names, _, _ := unstructured.NestedStringSlice(m, "resourceNames")
		groups, _, _ := unstructured.NestedStringSlice(m, "apiGroups")
		resources, _, _ := unstructured.NestedStringSlice(m, "resources")
		verbs, _, _ := unstructured.NestedStringSlice(m, "verbs")
		for _, g := range groups {
			for _, res := range resources {
				for _, v := range verbs {
					got = append(got, fmt.Sprintf("%s/%s:%s%v", g, res, v, names))
				}
			}
		}
	}
	slices.Sort(got)
	want := []string{
		"coordination.k8s.io/leases:create[]",
		"coordination.k8s.io/leases:get[argo-disruption-handler-sweep]",
		"coordination.k8s.io/leases:update[argo-disruption-handler-sweep]",
	}
	if !slices.Equal(got, want) {
		t.Errorf("Role grants %v, want %v", got, want)
	}
	rb := manifests.Find(objs, "RoleBinding", "argo-disruption-handler-sweep")
	if rb == nil {
		t.Fatal("no RoleBinding argo-disruption-handler-sweep")
	}
	subjects, _, _ := unstructured.NestedSlice(rb.Object, "subjects")
	if len(subjects) != 1 || subjects[0].(map[string]any)["name"] != f.Deploy.ServiceAccountName {
		t.Errorf("RoleBinding subjects %v", subjects)
	}
	if sweep.LeaseName != "argo-disruption-handler-sweep" {
		t.Errorf("the code's Lease is %q", sweep.LeaseName)
	}
}

// TestMetricsPortIsFree: the port Prometheus is told to scrape is the one the function listens on
// by default, and not one Knative Serving keeps for its queue-proxy sidecar or profiling (8008,
// 8012, 8013, 8022, 9090, 9091: knative.dev/serving pkg/apis/serving/k8s_validation.go
// reservedPorts). In the same pod, a listener on one of those makes queue-proxy or the function
// fail to bind.
func TestMetricsPortIsFree(t *testing.T) {
	var cfg config.Config
	if err := envconfig.Process("ADH", &cfg); err != nil {
		t.Fatal(err)
	}
	_, port, err := net.SplitHostPort(cfg.MetricsAddress)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains([]string{"8008", "8012", "8013", "8022", "9090", "9091"}, port) {
		t.Errorf("default metrics port %s is reserved by Knative Serving", port)
	}
	if got := readFuncYAML(t).Deploy.Annotations["prometheus.io/port"]; got != port {
		t.Errorf("func.yaml prometheus.io/port = %q, want the listener's %s", got, port)
	}
}

// TestClusterLocal: the function has no route outside the cluster, with func deploy and with the
// manifests alike.
func TestClusterLocal(t *testing.T) {
	const key, want = "networking.knative.dev/visibility", "cluster-local"
	found := false
	for _, l := range readFuncYAML(t).Deploy.Labels {
		found = found || l.Key == key && l.Value == want
	}
	if !found {
		t.Errorf("func.yaml deploy.labels lacks %s: %s", key, want)
	}
	svc := manifests.Find(withService(t), "Service", "argo-disruption-handler")
	if svc == nil || svc.GetLabels()[key] != want {
		t.Errorf("the chart's Service is not %s", want)
	}
}

// TestOIDCAudience: every Trigger, and the dead-letter sink, name the audience the function
// verifies tokens for (ADH_OIDC_AUDIENCE's default), so that with Knative Eventing's OIDC on the
// broker sends a token the function accepts.
func TestOIDCAudience(t *testing.T) {
	var cfg config.Config
	if err := envconfig.Process("ADH", &cfg); err != nil {
		t.Fatal(err)
	}
	for _, o := range defaults(t) {
		var aud string
		switch o.GetKind() {
		case "Trigger":
			aud, _, _ = unstructured.NestedString(o.Object, "spec", "subscriber", "audience")
		case "Broker":
			aud, _, _ = unstructured.NestedString(o.Object, "spec", "delivery", "deadLetterSink", "audience")
		default:
			continue
		}
		if aud != cfg.OIDCAudience {
			t.Errorf("%s %s audience %q, want ADH_OIDC_AUDIENCE %q", o.GetKind(), o.GetName(), aud, cfg.OIDCAudience)
		}
	}
}

// networkPeer is one caller the NetworkPolicy admits: the namespace, one pod label, the port, and
// who it is in Knative (knative.dev/serving v0.50.0 and its third_party/kourier-latest).
type networkPeer struct {
	namespace, label, value string
	port                    int64
	who                     string
}

// networkPeers is exactly who may connect to the function's pods; the kubelet's probes come
// from the pod's node, which a NetworkPolicy never blocks.
func networkPeers(t *testing.T) []networkPeer {
	var cfg config.Config
	if err := envconfig.Process("ADH", &cfg); err != nil {
		t.Fatal(err)
	}
	_, port, err := net.SplitHostPort(cfg.MetricsAddress)
	if err != nil {
		t.Fatal(err)
	}
	metrics, err := strconv.ParseInt(port, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return []networkPeer{
		{"knative-serving", "app", "activator", 8012, "Serving's activator: deliveries while scaled to zero or in proxy mode, its readiness probes"},
		{"kourier-system", "app", "3scale-kourier-gateway", 8012, "the cluster-local gateway (kourier-internal): deliveries in serve mode"},
		{"knative-serving", "app", "autoscaler", 9090, "Serving's autoscaler scrapes queue-proxy's autoscaling metrics"},
		{"monitoring", "app.kubernetes.io/name", "prometheus", metrics, "Prometheus scrapes the function's /metrics (ADH_METRICS_ADDRESS)"},
	}
}

func (p networkPeer) key() string {
	return fmt.Sprintf("%s/%s=%s:%d", p.namespace, p.label, p.value, p.port)
}

// admitted flattens a NetworkPolicy's ingress into namespace/label=value:port keys, failing on
// anything broader than one namespace and one pod label per peer on plain TCP ports.
func admitted(t *testing.T, np *unstructured.Unstructured) []string {
	t.Helper()
	rules, _, _ := unstructured.NestedSlice(np.Object, "spec", "ingress")
	var out []string
	for i, r := range rules {
		m := r.(map[string]any)
		peers, _, _ := unstructured.NestedSlice(m, "from")
		ports, _, _ := unstructured.NestedSlice(m, "ports")
		if len(peers) == 0 || len(ports) == 0 {
			t.Errorf("ingress rule %d admits every caller or every port: %v", i, m)
		}
		for _, peer := range peers {
			pm := peer.(map[string]any)
			ns, _, _ := unstructured.NestedStringMap(pm, "namespaceSelector", "matchLabels")
			pods, _, _ := unstructured.NestedStringMap(pm, "podSelector", "matchLabels")
			if len(pm) != 2 || len(ns) != 1 || ns["kubernetes.io/metadata.name"] == "" || len(pods) != 1 {
				t.Errorf("ingress rule %d peer %v: want exactly one namespace (by name) and one pod label", i, pm)
				continue
			}
			for _, port := range ports {
				pt := port.(map[string]any)
				n, ok := pt["port"].(int64)
				if proto, set := pt["protocol"]; !ok || pt["endPort"] != nil || set && proto != "TCP" {
					t.Errorf("ingress rule %d port %v: want one TCP port number", i, pt)
					continue
				}
				for k, v := range pods {
					out = append(out, fmt.Sprintf("%s/%s=%s:%d", ns["kubernetes.io/metadata.name"], k, v, n))
				}
			}
		}
	}
	slices.Sort(out)
	return out
}

// TestNetworkPolicy: networkPolicy.enabled renders a NetworkPolicy which selects the function's pods (the label Knative puts on a Service's pods) and admits
// exactly networkPeers, ingress only.
func TestNetworkPolicy(t *testing.T) {
	f := readFuncYAML(t)
	var want []string
	for _, p := range networkPeers(t) {
		if p.who == "" {
			t.Errorf("%s has no reason", p.key())
		}
		want = append(want, p.key())
	}
	slices.Sort(want)
	for _, tc := range []struct{ name, values string }{{"defaults", "networkPolicy: {enabled: true}"}, {"full", fullValues}} {
		t.Run(tc.name, func(t *testing.T) {
			np := manifests.Find(render(t, manifests.Namespace, tc.values), "NetworkPolicy", f.Name)
			if np == nil {
				t.Fatalf("no NetworkPolicy %s: any pod of the cluster could post to the function", f.Name)
			}
			if np.GetNamespace() != f.Deploy.Namespace {
				t.Errorf("NetworkPolicy in %q, want %s", np.GetNamespace(), f.Deploy.Namespace)
			}
			sel, _, _ := unstructured.NestedMap(np.Object, "spec", "podSelector")
			if want := map[string]any{"matchLabels": map[string]any{"serving.knative.dev/service": f.Name}}; !reflect.DeepEqual(sel, want) {
				t.Errorf("podSelector %v, want %v", sel, want)
			}
			if types, _, _ := unstructured.NestedStringSlice(np.Object, "spec", "policyTypes"); !slices.Equal(types, []string{"Ingress"}) {
				t.Errorf("policyTypes %v, want [Ingress]", types)
			}
			if got := admitted(t, np); !slices.Equal(got, want) {
				t.Errorf("the NetworkPolicy admits\n  %v\nwant exactly\n  %v", got, want)
			}
		})
	}
}

// sendsToBroker reports whether o is a source (or SinkBinding) whose sink is the Broker default.
func sendsToBroker(o *unstructured.Unstructured) bool {
	sink, _, _ := unstructured.NestedStringMap(o.Object, "spec", "sink", "ref")
	return sink["kind"] == "Broker" && sink["name"] == "default"
}

// TestEventPolicy: with oidc.eventPolicy the Broker takes events only from the chart's own
// senders (by reference, resolved by Knative to their OIDC identities): every source and the
// notifications' SinkBinding it renders, nothing else, no identity patterns. Off by default:
// Knative's webhook refuses an EventPolicy while authentication-oidc is off (eventing v0.50.0
// pkg/apis/eventing/v1alpha1/eventpolicy_validation.go).
func TestEventPolicy(t *testing.T) {
	for _, tc := range []struct {
		name    string
		values  string
		senders int
	}{
		{"sources and notifications", "oidc: {eventPolicy: true}", 5},
		{"with the SQS source", fullValues, 6},
		{"without Karpenter or notifications", "oidc: {eventPolicy: true}\nsources: {karpenter: {enabled: false}}\nnotifications: {enabled: false}", 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := manifests.Namespace
			if tc.values == fullValues {
				ns = fullNamespace
			}
			objs := render(t, ns, tc.values)
			var want []string
			for _, o := range objs {
				if sendsToBroker(o) {
					want = append(want, fmt.Sprintf("%s/%s/%s/%s", o.GetAPIVersion(), o.GetKind(), ns, o.GetName()))
				}
			}
			slices.Sort(want)
			if len(want) != tc.senders {
				t.Errorf("%d senders to the Broker, want %d: %v", len(want), tc.senders, want)
			}
			var got []string
			policies := 0
			for _, ep := range objs {
				if ep.GetKind() != "EventPolicy" {
					continue
				}
				policies++
				if ep.GetAPIVersion() != "eventing.knative.dev/v1alpha1" || ep.GetNamespace() != ns {
					t.Errorf("EventPolicy %s: %s in %q, want eventing.knative.dev/v1alpha1 in %s", ep.GetName(), ep.GetAPIVersion(), ep.GetNamespace(), ns)
				}
				to, _, _ := unstructured.NestedSlice(ep.Object, "spec", "to")
				wantTo := []any{map[string]any{"ref": map[string]any{"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": "default"}}}
				if !reflect.DeepEqual(to, wantTo) {
					t.Errorf("EventPolicy %s to = %v, want the Broker default only (an empty to is every sink of the namespace)", ep.GetName(), to)
				}
				if _, ok := ep.Object["spec"].(map[string]any)["filters"]; ok {
					t.Errorf("EventPolicy %s has filters: the Triggers filter, the policy only says who", ep.GetName())
				}
				from, _, _ := unstructured.NestedSlice(ep.Object, "spec", "from")
				for _, fr := range from {
					ref, ok, _ := unstructured.NestedStringMap(fr.(map[string]any), "ref")
					if !ok || len(fr.(map[string]any)) != 1 {
						t.Errorf("EventPolicy %s from %v: want a ref only (a sub would hard-code eventing's ServiceAccount names)", ep.GetName(), fr)
						continue
					}
					got = append(got, fmt.Sprintf("%s/%s/%s/%s", ref["apiVersion"], ref["kind"], ref["namespace"], ref["name"]))
				}
			}
			slices.Sort(got)
			if policies != 1 || !slices.Equal(got, want) {
				t.Errorf("%d EventPolicies admit\n  %v\nwant one admitting exactly the senders to the Broker\n  %v", policies, got, want)
			}
		})
	}
	for _, o := range defaults(t) {
		if o.GetKind() == "EventPolicy" {
			t.Errorf("the defaults ship EventPolicy %s: Knative refuses it (and the whole install fails) where authentication-oidc is off", o.GetName())
		}
	}
}

// TestFuncAcceptsTheRepository: func v0.44.0 refuses to build or deploy a directory whose
// func.yaml is not an initialized function (`fn.Function.Initialized()`: a non-zero `created`,
// which `func create` writes), and the host builder needs the Go runtime and a name.
func TestFuncAcceptsTheRepository(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(manifests.Dir(), "..", "func.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		SpecVersion string    `json:"specVersion"`
		Name        string    `json:"name"`
		Runtime     string    `json:"runtime"`
		Created     time.Time `json:"created"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("func.yaml: %v", err)
	}
	if f.Created.IsZero() {
		t.Error("func.yaml has no `created`: func build and func deploy answer \"does not contain an initialized function\"")
	}
	if f.Runtime != "go" || f.Name == "" || f.SpecVersion == "" {
		t.Errorf("func.yaml: runtime %q, name %q, specVersion %q", f.Runtime, f.Name, f.SpecVersion)
	}
}
