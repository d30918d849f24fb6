// Package manifests renders the Helm chart of deploy/chart with the Helm CLI (helm template), the
// way users install it, for the tests that check it: deploy's unit tests (settings, RBAC, wiring,
// func.yaml agreement), the e2e tests (server-side dry run, install/upgrade/uninstall, the
// function's repair steps under the shipped ClusterRole), the demo and the benchmarks.
package manifests

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"
	sigsyaml "sigs.k8s.io/yaml"
)

// HelmVersion is the Helm CLI the tests run (internal/localcluster/build-bins.sh helm).
const HelmVersion = "v4.3.2"

// Namespace is where the README installs the chart, and func.yaml's deploy.namespace.
const Namespace = "argo-disruption-handler"

// Release is the release name the README uses.
const Release = "argo-disruption-handler"

// Dir returns the source tree's deploy/ folder.
func Dir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "deploy")
}

// ChartDir returns the chart's folder.
func ChartDir() string { return filepath.Join(Dir(), "chart") }

// Helm returns the Helm CLI to run: $ADH_HELM, else the one build-bins.sh caches, else helm on
// the PATH.
func Helm() (string, error) {
	if p := os.Getenv("ADH_HELM"); p != "" {
		return p, nil
	}
	cache := os.Getenv("ADH_CACHE")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache", "argo-disruption-handler")
	}
	if p := filepath.Join(cache, "helm-"+HelmVersion, "helm"); isExecutable(p) {
		return p, nil
	}
	if p, err := exec.LookPath("helm"); err == nil {
		return p, nil
	}
	return "", errors.New("no helm CLI: run internal/localcluster/build-bins.sh helm (or set ADH_HELM)")
}

func isExecutable(path string) bool {
	st, err := os.Stat(path)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}

// Run runs the Helm CLI with args and returns its standard output; the error carries its
// standard error.
func Run(args ...string) ([]byte, error) {
	helm, err := Helm()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(helm, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	// Helm keeps no state for template and lint; an empty home keeps a user's repositories and
	// plugins out of the tests.
	home, err := os.MkdirTemp("", "adh-helm-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(home)
	cmd.Env = append(os.Environ(), "HELM_CONFIG_HOME="+home, "HELM_CACHE_HOME="+home, "HELM_DATA_HOME="+home)
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("helm %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// ValuesFiles writes each values document to a file of dir and returns helm's -f arguments.
func ValuesFiles(dir string, values ...string) ([]string, error) {
	if strings.Contains(dir, ",") {
		return nil, fmt.Errorf("values folder %s: helm splits -f on commas", dir)
	}
	var args []string
	for i, v := range values {
		p := filepath.Join(dir, fmt.Sprintf("values-%d.yaml", i))
		if err := os.WriteFile(p, []byte(v), 0o600); err != nil {
			return nil, err
		}
		args = append(args, "-f", p)
	}
	return args, nil
}

// Render runs `helm template` on the chart, released into namespace, with the values documents
// (YAML, applied in order like helm's -f), and returns its objects in the chart's order.
func Render(namespace string, values ...string) ([]*unstructured.Unstructured, error) {
	dir, err := os.MkdirTemp("", "adh-values-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	args, err := ValuesFiles(dir, values...)
	if err != nil {
		return nil, err
	}
	out, err := Run(append([]string{"template", Release, ChartDir(), "--namespace", namespace}, args...)...)
	if err != nil {
		return nil, err
	}
	return Decode(out)
}

// Decode splits a multi-document YAML stream into objects (through JSON, so that numbers are
// int64/float64 as in every Kubernetes client).
func Decode(stream []byte) ([]*unstructured.Unstructured, error) {
	var out []*unstructured.Unstructured
	r := yaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(stream)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading the rendered chart: %w", err)
		}
		j, err := sigsyaml.YAMLToJSON(doc)
		if err != nil {
			return nil, fmt.Errorf("decoding the rendered chart: %w", err)
		}
		if s := string(bytes.TrimSpace(j)); s == "null" || s == "{}" {
			continue
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(j); err != nil {
			return nil, fmt.Errorf("decoding the rendered chart: %w: %s", err, doc)
		}
		out = append(out, u)
	}
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

// Broker returns the Broker and every Trigger the chart ships with its default values.
func Broker() (*unstructured.Unstructured, []*unstructured.Unstructured, error) {
	objs, err := Render(Namespace)
	if err != nil {
		return nil, nil, err
	}
	broker := Find(objs, "Broker", "default")
	if broker == nil {
		return nil, nil, fmt.Errorf("deploy/chart has no Broker named default")
	}
	var triggers []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == "Trigger" {
			triggers = append(triggers, o)
		}
	}
	if len(triggers) == 0 {
		return nil, nil, fmt.Errorf("deploy/chart has no Trigger")
	}
	return broker, triggers, nil
}
