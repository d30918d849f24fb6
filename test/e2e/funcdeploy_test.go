//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"function/internal/localcluster"
	"function/internal/manifests"
)

// funcCLI is where internal/localcluster/build-bins.sh func puts the func CLI, unless ADH_FUNC names one.
func funcCLI() string {
	if p := os.Getenv("ADH_FUNC"); p != "" {
		return p
	}
	return filepath.Join(localcluster.DefaultCacheDir(), "func-v0.44.0", "func")
}

// difference is one field of the Service in which func deploy and the manifest disagree.
type difference struct {
	path          string
	got, want     string // JSON values
	inGot, inWant bool
}

// acceptedDifferences are the ways the Service func deploy creates may differ from the chart's
// (service.create), each with why it is harmless. The test fails on any other
// difference, and on a rule that matches none (so that the list stays true). got is every field
// of func's Service.
var acceptedDifferences = []acceptedDifference{
	{"func's own labels and annotations (its bookkeeping; Dapr's, inert without Dapr)", func(d difference, _ map[string]string) bool {
		return d.inGot && !d.inWant && funcOwnMetadata.MatchString(d.path)
	}},
	{"func copies deploy.annotations to the Service too (Knative reads them on the revision template)", func(d difference, got map[string]string) bool {
		k, ok := strings.CutPrefix(d.path, "metadata.annotations[")
		return ok && d.inGot && !d.inWant && got["spec.template.metadata.annotations["+k] == d.got
	}},
	{"func copies deploy.labels to the revision template too", func(d difference, got map[string]string) bool {
		k, ok := strings.CutPrefix(d.path, "spec.template.metadata.labels[")
		return ok && d.inGot && !d.inWant && got["metadata.labels["+k] == d.got
	}},
	{"func deploy sets ADDRESS=0.0.0.0, the manifest LISTEN_ADDRESS=0.0.0.0:8080: func-go listens on 0.0.0.0:8080 with either (checked by listenAddress)", func(d difference, _ map[string]string) bool {
		return d.path == "spec.template.spec.containers[0].env[ADDRESS]" && d.inGot && !d.inWant ||
			d.path == "spec.template.spec.containers[0].env[LISTEN_ADDRESS]" && !d.inGot && d.inWant
	}},
	{"func stamps the build time in BUILT, so that a redeploy of the same image makes a new revision", func(d difference, _ map[string]string) bool {
		return d.path == "spec.template.spec.containers[0].env[BUILT]" && d.inGot && !d.inWant
	}},
	{"func names no container (Knative Serving's webhook names it user-container)", func(d difference, _ map[string]string) bool {
		return d.path == "spec.template.spec.containers[0].name" && (!d.inGot || d.got == `""`)
	}},
	{"func writes its probes' port as 0, Go's zero value (Knative probes the serving port, as with none)", func(d difference, _ map[string]string) bool {
		return (d.path == "spec.template.spec.containers[0].livenessProbe.httpGet.port" ||
			d.path == "spec.template.spec.containers[0].readinessProbe.httpGet.port") && d.got == "0" && !d.inWant
	}},
	{"func.yaml has no field for the request timeout (Knative's default is 300 s)", func(d difference, _ map[string]string) bool {
		return d.path == "spec.template.spec.timeoutSeconds" && !d.inGot
	}},
	{"func.yaml has no field for the port (Knative's default is 8080, the manifest's too)", func(d difference, _ map[string]string) bool {
		return d.path == "spec.template.spec.containers[0].ports[0].containerPort" && !d.inGot && d.want == "8080"
	}},
	{"Helm's release labels on the chart's objects (which release owns them)", func(d difference, _ map[string]string) bool {
		return !d.inGot && d.inWant && helmReleaseLabel.MatchString(d.path)
	}},
	{"the chart's settings checksum makes `helm upgrade` start a revision when only settings changed (func deploy makes one on every deploy: BUILT)", func(d difference, _ map[string]string) bool {
		return d.path == "spec.template.metadata.annotations[argo-disruption-handler/settings-checksum]" && !d.inGot && d.inWant
	}},
}

// acceptedDifference is one rule of acceptedDifferences.
type acceptedDifference struct {
	why   string
	match func(d difference, got map[string]string) bool
}

// helmReleaseLabel are the labels the chart puts on every object it renders for its release.
var helmReleaseLabel = regexp.MustCompile(`^metadata\.labels\[(app\.kubernetes\.io/(instance|managed-by|version)|helm\.sh/chart)\]$`)

// funcOwnMetadata are the labels and annotations func deploy adds to every function.
var funcOwnMetadata = regexp.MustCompile(`\[(function\.knative\.dev|function\.knative\.dev/[^\]]*|boson\.dev/[^\]]*|dapr\.io/[^\]]*)\]$`)

// TestFuncDeploy runs `func deploy --builder=host` (the func CLI v0.44.0, no container runtime)
// on a copy of this repository's files, pushing to a local OCI registry, against the local API
// server with Knative Serving's CRDs; the stack stands in for Knative Serving's controller
// (Cluster.ServeKnativeServices). It checks that the image the Service names was pushed, and
// compares the Service func created with the one the chart renders (service.create), field by field:
// only func's own metadata and acceptedDifferences may differ. Skipped unless the func CLI is
// built (internal/localcluster/build-bins.sh func) or ADH_FUNC names one. See docs/dev/func-deploy.md.
func TestFuncDeploy(t *testing.T) {
	bin := funcCLI()
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("the func CLI is not built (%s): run internal/localcluster/build-bins.sh func, or set ADH_FUNC", bin)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	root, _ := filepath.Abs("../..")
	src := copyRepository(t, root)

	want := deployedService(t)
	ns := want.GetNamespace()

	c, _ := startCluster(ctx, t, localcluster.Options{NoArgo: true}, 0)
	if err := c.InstallKnativeServingCRDs(ctx); err != nil {
		t.Fatal(err)
	}
	// func deploy requires the function's Namespace, ServiceAccount and the settings ConfigMap
	// func.yaml imports to exist (the rest of the chart needs Knative Eventing).
	createFromChart(ctx, t, c, c.Dynamic(), chartObject{"ServiceAccount", fnServiceAccount}, chartObject{"ConfigMap", "argo-disruption-handler-settings"})

	serveCtx, stopServing := context.WithCancel(ctx)
	served := make(chan struct{})
	go func() {
		defer close(served)
		c.ServeKnativeServices(serveCtx, ns, t.Logf)
	}()
	defer func() { stopServing(); <-served }()

	registry, stopRegistry, err := localcluster.StartRegistry()
	if err != nil {
		t.Fatal(err)
	}
	defer stopRegistry()

	logPath := filepath.Join(c.LogDir(), "func-deploy.log")
	start := time.Now()
	out, err := runFunc(ctx, bin, src, c.Kubeconfig(), logPath,
		"deploy", "--builder=host", "--registry="+registry+"/adh", "--registry-insecure", "--verbose")
	t.Logf("func deploy: %.0f s, output in %s; its last lines:\n%s", time.Since(start).Seconds(), logPath, tail(out, 15))
	if err != nil {
		t.Fatalf("func deploy: %v", err)
	}

	got, err := c.Dynamic().Resource(localcluster.KnativeServiceGVR).Namespace(ns).Get(ctx, want.GetName(), metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the Service func deploy created: %v", err)
	}
	if b, err := yaml.Marshal(got.Object); err == nil {
		_ = os.WriteFile(filepath.Join(c.LogDir(), "func-deploy-service.yaml"), b, 0o644)
	}

	image, _, _ := unstructured.NestedString(containerOf(t, got), "image")
	checkPushed(t, registry, image, want.GetName())

	if g, w := listenAddress(t, got), listenAddress(t, want); g != w || w != "0.0.0.0:8080" {
		t.Errorf("func-go listens on %s under func deploy, %s under the manifest; want both 0.0.0.0:8080", g, w)
	}

	compareServices(t, got, want)
}

// compareServices fails t on every field in which got (func's Service) and want (the manifest's)
// differ, unless a rule of acceptedDifferences explains it, and on a rule that explains nothing.
func compareServices(t *testing.T, got, want *unstructured.Unstructured) {
	t.Helper()
	gotFields, wantFields := serviceFields(t, got), serviceFields(t, want)
	matched := make([]int, len(acceptedDifferences))
	for _, path := range unionKeys(gotFields, wantFields) {
		d := difference{path: path}
		d.got, d.inGot = gotFields[path]
		d.want, d.inWant = wantFields[path]
		if d.inGot && d.inWant && d.got == d.want {
			continue
		}
		i := slices.IndexFunc(acceptedDifferences, func(a acceptedDifference) bool {
			return a.match(d, gotFields)
		})
		if i < 0 {
			t.Errorf("%s: func deploy %s, manifest %s", path, show(d.got, d.inGot), show(d.want, d.inWant))
			continue
		}
		matched[i]++
		t.Logf("accepted: %s: func deploy %s, manifest %s", path, show(d.got, d.inGot), show(d.want, d.inWant))
	}
	for i, a := range acceptedDifferences {
		if matched[i] == 0 {
			t.Errorf("no field differs as %q: drop that rule", a.why)
		}
	}
}

// copyRepository copies the repository's files (tracked, and new ones not ignored, as in the
// work tree) to a new directory: what a user has after a clone, without .func or build output.
func copyRepository(t *testing.T, root string) string {
	t.Helper()
	out, err := exec.Command("git", "-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	dst := t.TempDir()
	for _, f := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		data, err := os.ReadFile(filepath.Join(root, f))
		if os.IsNotExist(err) {
			continue // deleted in the work tree
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dst, f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, f), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// deployedService is the Knative Service the chart renders with service.create.
func deployedService(t *testing.T) *unstructured.Unstructured {
	t.Helper()
	objs, err := manifests.Render(manifests.Namespace, "service: {create: true, image: registry.example.com/argo-disruption-handler:latest}")
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if o.GetKind() == "Service" && o.GetAPIVersion() == "serving.knative.dev/v1" {
			return o
		}
	}
	t.Fatal("the chart renders no Knative Service")
	return nil
}

// runFunc runs the func CLI in dir as a user without a container runtime would (the host
// builder, GOFLAGS=-mod=mod for its scaffold's go.mod), its output also written to logPath.
func runFunc(ctx context.Context, bin, dir, kubeconfig, logPath string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig, "FUNC_ENABLE_HOST_BUILDER=true", "GOFLAGS=-mod=mod")
	// func dies with the test, and a timeout ends its go builds too (its own process group).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	_ = os.WriteFile(logPath, out.Bytes(), 0o644)
	return out.String(), err
}

// checkPushed checks that image is a digest reference into the local registry and that the
// registry serves that manifest: the Service runs what func pushed.
func checkPushed(t *testing.T, registry, image, name string) {
	t.Helper()
	repo, digest, ok := strings.Cut(image, "@")
	if !ok || repo != registry+"/adh/"+name || !strings.HasPrefix(digest, "sha256:") {
		t.Errorf("the Service runs %q, want %s/adh/%s@sha256:…", image, registry, name)
		return
	}
	req, err := http.NewRequest(http.MethodHead, "http://"+registry+"/v2/adh/"+name+"/manifests/"+digest, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("the registry answers %s for the Service's image %s", resp.Status, image)
	}
}

// containerOf returns the Service's only container.
func containerOf(t *testing.T, svc *unstructured.Unstructured) map[string]any {
	t.Helper()
	cs, _, _ := unstructured.NestedSlice(svc.Object, "spec", "template", "spec", "containers")
	if len(cs) != 1 {
		t.Fatalf("Service %s has %d containers, want 1", svc.GetName(), len(cs))
	}
	return cs[0].(map[string]any)
}

// listenAddress is where func-go (knative.dev/func-go/http) listens in the Service's container:
// LISTEN_ADDRESS, else ADDRESS (default 127.0.0.1) joined with PORT (default 8080), which
// Knative Serving sets to the container port.
func listenAddress(t *testing.T, svc *unstructured.Unstructured) string {
	t.Helper()
	c := containerOf(t, svc)
	env := map[string]string{}
	envs, _, _ := unstructured.NestedSlice(c, "env")
	for _, e := range envs {
		m := e.(map[string]any)
		env[m["name"].(string)], _ = m["value"].(string)
	}
	if a := env["LISTEN_ADDRESS"]; a != "" {
		return a
	}
	port := "8080"
	if ports, _, _ := unstructured.NestedSlice(c, "ports"); len(ports) > 0 {
		if p, ok := ports[0].(map[string]any)["containerPort"]; ok {
			port = fmt.Sprint(p)
		}
	}
	if a := env["ADDRESS"]; a != "" {
		return a + ":" + port
	}
	if env["PORT"] != "" {
		return "127.0.0.1:" + env["PORT"]
	}
	return "127.0.0.1:8080"
}

// serviceFields flattens what a Knative Service asks for (name, namespace, labels,
// annotations, spec) to path -> JSON value; env is keyed by variable name. The image, the
// server's metadata and the status are left out.
func serviceFields(t *testing.T, svc *unstructured.Unstructured) map[string]string {
	t.Helper()
	out := map[string]string{}
	add := func(path string, v any) {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		out[path] = string(b)
	}
	add("metadata.name", svc.GetName())
	add("metadata.namespace", svc.GetNamespace())
	for k, v := range svc.GetLabels() {
		add("metadata.labels["+k+"]", v)
	}
	for k, v := range svc.GetAnnotations() {
		add("metadata.annotations["+k+"]", v)
	}
	spec, _, _ := unstructured.NestedMap(svc.Object, "spec")
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				if path == "spec.template.metadata.labels" || path == "spec.template.metadata.annotations" {
					walk(path+"["+k+"]", e)
				} else {
					walk(path+"."+k, e)
				}
			}
		case []any:
			for i, e := range v {
				m, isMap := e.(map[string]any)
				switch {
				case !isMap:
					add(path, v) // a list of values (capabilities, args): compared whole
					return
				case strings.HasSuffix(path, ".env") && m["name"] != nil:
					add(fmt.Sprintf("%s[%s]", path, m["name"]), e)
				default:
					walk(fmt.Sprintf("%s[%d]", path, i), e)
				}
			}
		case nil:
			// An explicit null (func's empty creationTimestamp) asks for nothing, as an absent field.
		default:
			if !strings.HasSuffix(path, "].image") {
				add(path, v)
			}
		}
	}
	walk("spec", spec)
	return out
}

func unionKeys(a, b map[string]string) []string {
	var keys []string
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return slices.Compact(keys)
}

func show(v string, ok bool) string {
	if !ok {
		return "(absent)"
	}
	return v
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
