package deploy

import (
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

func render(t *testing.T, path string) []*unstructured.Unstructured {
	t.Helper()
	objs, err := manifests.Render(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) == 0 {
		t.Fatalf("%s renders no object", path)
	}
	return objs
}

// rbacRule is one verb the function's ClusterRole grants, and why the code needs it.
type rbacRule struct{ group, resource, verb, reason string }

// functionRules is exactly what deploy/base/rbac-function.yaml must grant (and the README's RBAC
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
	objs := render(t, "base")
	role := manifests.Find(objs, "ClusterRole", f.Name)
	if role == nil {
		t.Fatalf("no ClusterRole %s in deploy/base", f.Name)
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
	b, err := os.ReadFile(filepath.Join(manifests.Dir(), "base", "rbac-function.yaml"))
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
// kustomization creates.
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
// get/list/watch exactly the kinds they watch.
func TestSourcesRBACCoversTheirResources(t *testing.T) {
	f := readFuncYAML(t)
	objs := render(t, "base")
	const sa = "argo-disruption-handler-sources"
	role := manifests.Find(objs, "ClusterRole", sa)
	if role == nil {
		t.Fatalf("no ClusterRole %s", sa)
	}
	if got, want := grants(t, role), keys(sourceRules); !slices.Equal(got, want) {
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
	if n != 3 {
		t.Errorf("%d ApiServerSources, want 3 (workflow pods, Events, Nodes/NodeClaims)", n)
	}
}

// TestEventingWiring: one Broker; every source sinks to it; every Trigger goes from it to the
// function's Service; no two Triggers (or a func.yaml subscription) share a filter; the sweep's
// PingSource and its Trigger exist.
func TestEventingWiring(t *testing.T) {
	f := readFuncYAML(t)
	objs := render(t, "base")
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
		case "ApiServerSource", "IntegrationSource", "PingSource":
			sink, _, _ := unstructured.NestedStringMap(o.Object, "spec", "sink", "ref")
			if sink["kind"] != "Broker" || sink["name"] != "default" || sink["apiVersion"] != "eventing.knative.dev/v1" {
				t.Errorf("%s %s sinks to %v, want Broker default", o.GetKind(), o.GetName(), sink)
			}
		case "Trigger":
			if b, _, _ := unstructured.NestedString(o.Object, "spec", "broker"); b != "default" {
				t.Errorf("Trigger %s on broker %q", o.GetName(), b)
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

func filterKey(attrs map[string]string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(attrs)) {
		parts = append(parts, k+"="+attrs[k])
	}
	return strings.Join(parts, ",")
}

// TestOverlaysAgreeWithFuncYAML: each overlay is the base plus the NetworkPolicy (TestNetworkPolicy)
// and the function's Knative Service, which says what func.yaml says (name, namespace, ServiceAccount, env, annotations, health
// endpoints); only ADH_DRY_RUN differs between the overlays. Every object is in func.yaml's
// namespace.
func TestOverlaysAgreeWithFuncYAML(t *testing.T) {
	f := readFuncYAML(t)
	base := render(t, "base")
	if ns := manifests.Find(base, "Namespace", f.Deploy.Namespace); ns == nil {
		t.Errorf("deploy/base creates no Namespace %s", f.Deploy.Namespace)
	}
	funcEnv := map[string]string{}
	for _, e := range f.Run.Envs {
		funcEnv[e.Name] = e.Value
	}
	known := configVariables()
	for name := range funcEnv {
		if !known[name] {
			t.Errorf("func.yaml sets %s, which config.Config does not read", name)
		}
	}
	dryRun := map[string]string{"overlays/default": "false", "overlays/dry-run": "true"}
	for _, path := range manifests.Overlays {
		t.Run(path, func(t *testing.T) {
			objs := render(t, path)
			if len(objs) != len(base)+2 {
				t.Errorf("%d objects, want the base's %d plus the Service and the NetworkPolicy", len(objs), len(base))
			}
			for _, o := range objs {
				cluster := map[string]bool{"Namespace": true, "ClusterRole": true, "ClusterRoleBinding": true}[o.GetKind()]
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
			if !maps.Equal(ann, f.Deploy.Annotations) {
				t.Errorf("revision annotations %v, func.yaml deploy.annotations %v", ann, f.Deploy.Annotations)
			}
			for k, v := range map[string]string{"autoscaling.knative.dev/min-scale": "0", "karpenter.sh/do-not-disrupt": "true"} {
				if ann[k] != v {
					t.Errorf("revision annotation %s = %q, want %q", k, ann[k], v)
				}
			}
			containers, _, _ := unstructured.NestedSlice(tmpl, "spec", "containers")
			if len(containers) != 1 {
				t.Fatalf("%d containers", len(containers))
			}
			c := containers[0].(map[string]any)
			env := map[string]string{}
			envs, _, _ := unstructured.NestedSlice(c, "env")
			for _, e := range envs {
				m := e.(map[string]any)
				env[m["name"].(string)], _ = m["value"].(string)
			}
			if env["LISTEN_ADDRESS"] != "0.0.0.0:8080" {
				t.Errorf("LISTEN_ADDRESS = %q: func-go would listen on 127.0.0.1 only", env["LISTEN_ADDRESS"])
			}
			delete(env, "LISTEN_ADDRESS")
			want := maps.Clone(funcEnv)
			want["ADH_DRY_RUN"] = dryRun[path]
			if !maps.Equal(env, want) {
				t.Errorf("Service env %v, want func.yaml's run.envs with ADH_DRY_RUN=%s: %v", env, dryRun[path], want)
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
			// Apart from the Service and the NetworkPolicy, each overlay is exactly the base.
			for _, b := range base {
				o := manifests.Find(objs, b.GetKind(), b.GetName())
				if o == nil || !reflect.DeepEqual(o.Object, b.Object) {
					t.Errorf("%s %s differs from deploy/base", b.GetKind(), b.GetName())
				}
			}
		})
	}
	if funcEnv["ADH_DRY_RUN"] != dryRun["overlays/default"] {
		t.Errorf("func.yaml ADH_DRY_RUN = %q, overlays/default %q", funcEnv["ADH_DRY_RUN"], dryRun["overlays/default"])
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

// TestREADMERBACTable: the README's Deploy section lists each (group, resource) of the function's
// ClusterRole with exactly its verbs.
func TestREADMERBACTable(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(manifests.Dir(), "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	start := strings.Index(s, "\n## Deploy")
	if start < 0 {
		t.Fatal("README has no ## Deploy section")
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
	objs := render(t, "base")
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
	for _, overlay := range []string{"overlays/default", "overlays/dry-run"} {
		svc := manifests.Find(render(t, overlay), "Service", "argo-disruption-handler")
		if svc == nil || svc.GetLabels()[key] != want {
			t.Errorf("%s: the Service is not %s", overlay, want)
		}
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
	for _, o := range render(t, "base") {
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

// TestNetworkPolicy: both overlays ship the NetworkPolicy of deploy/components/network-policy,
// which selects the function's pods (the label Knative puts on a Service's pods) and admits
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
	for _, path := range append(slices.Clone(manifests.Overlays), "components/network-policy") {
		t.Run(path, func(t *testing.T) {
			np := manifests.Find(render(t, path), "NetworkPolicy", f.Name)
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

// sendsToBroker reports whether o is a source whose sink is the Broker named default.
func sendsToBroker(o *unstructured.Unstructured) bool {
	sink, _, _ := unstructured.NestedStringMap(o.Object, "spec", "sink", "ref")
	return sink["kind"] == "Broker" && sink["name"] == "default"
}

// TestEventPolicy: deploy/components/event-policy lets the Broker take events only from the
// sources deploy/base ships (by reference, resolved by Knative to their OIDC identities): every
// one of them, nothing else, no identity patterns; the SQS source alone in its policy (deleted
// with the queue). No overlay includes it: Knative's webhook refuses an EventPolicy while
// authentication-oidc is off (eventing v0.50.0 pkg/apis/eventing/v1alpha1/eventpolicy_validation.go).
func TestEventPolicy(t *testing.T) {
	f := readFuncYAML(t)
	base := render(t, "base")
	var want []string
	for _, o := range base {
		if sendsToBroker(o) {
			want = append(want, fmt.Sprintf("%s/%s/%s/%s", o.GetAPIVersion(), o.GetKind(), f.Deploy.Namespace, o.GetName()))
		}
	}
	slices.Sort(want)
	if len(want) != 5 {
		t.Errorf("deploy/base has %d sources sending to the Broker, want 5 (3 ApiServerSources, the PingSource, the IntegrationSource): %v", len(want), want)
	}
	var got []string
	policies := 0
	for _, ep := range render(t, "components/event-policy") {
		if ep.GetKind() != "EventPolicy" {
			t.Errorf("components/event-policy renders a %s", ep.GetKind())
			continue
		}
		policies++
		if ep.GetAPIVersion() != "eventing.knative.dev/v1alpha1" || ep.GetNamespace() != f.Deploy.Namespace {
			t.Errorf("EventPolicy %s: %s in %q, want eventing.knative.dev/v1alpha1 in %s", ep.GetName(), ep.GetAPIVersion(), ep.GetNamespace(), f.Deploy.Namespace)
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
		var kinds []string
		for _, fr := range from {
			ref, ok, _ := unstructured.NestedStringMap(fr.(map[string]any), "ref")
			if !ok || len(fr.(map[string]any)) != 1 {
				t.Errorf("EventPolicy %s from %v: want a ref only (a sub would hard-code eventing's ServiceAccount names)", ep.GetName(), fr)
				continue
			}
			got = append(got, fmt.Sprintf("%s/%s/%s/%s", ref["apiVersion"], ref["kind"], ref["namespace"], ref["name"]))
			kinds = append(kinds, ref["kind"])
		}
		if slices.Contains(kinds, "IntegrationSource") && len(kinds) != 1 {
			t.Errorf("EventPolicy %s names the optional IntegrationSource with %v: without the queue it would leave the others unready", ep.GetName(), kinds)
		}
	}
	slices.Sort(got)
	if policies == 0 || !slices.Equal(got, want) {
		t.Errorf("the EventPolicies admit\n  %v\nwant exactly the sources sending to the Broker\n  %v", got, want)
	}
	for _, path := range manifests.Overlays {
		for _, o := range render(t, path) {
			if o.GetKind() == "EventPolicy" {
				t.Errorf("%s ships EventPolicy %s: Knative refuses it (and the whole apply fails) where authentication-oidc is off", path, o.GetName())
			}
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
