package localcluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/yaml"
)

const (
	// ArgoNamespace is where the workflow-controller runs and watches config.
	ArgoNamespace = "argo"
	// ArgoConfigMap is the controller's (initially empty) ConfigMap.
	ArgoConfigMap = "workflow-controller-configmap"
	// ArgoHealthPort is hard-coded in cmd/workflow-controller (":6060").
	ArgoHealthPort = 6060
)

var (
	crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	// WorkflowGVR and WorkflowTaskResultGVR are the Argo resources tests use.
	WorkflowGVR           = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "workflows"}
	WorkflowTaskResultGVR = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "workflowtaskresults"}
)

// argoModule is the Go module path of an Argo release: the major version is in it from v4.
func argoModule(version string) string {
	major, _, _ := strings.Cut(version, ".")
	return "github.com/argoproj/argo-workflows/" + major
}

// argoCRDFlavour names the CRDs Argo's default install applies: the minimal ones up to 3.7, the
// full schemas from 4.0.
func argoCRDFlavour(version string) string {
	if strings.HasPrefix(version, "v3.") {
		return "minimal"
	}
	return "full"
}

// argoCRDDir returns the directory holding the argoproj.io_*.yaml CRDs of the given Argo
// version's default install: <cache>/argo-<ver>/crds (copied there by build-bins.sh) or the
// argo-workflows module in the Go module cache (downloaded through the module proxy if needed).
func argoCRDDir(cacheDir, version string) (string, error) {
	d := filepath.Join(cacheDir, "argo-"+version, "crds")
	if m, _ := filepath.Glob(filepath.Join(d, "argoproj.io_*.yaml")); len(m) > 0 {
		return d, nil
	}
	cmd := exec.Command("go", "mod", "download", "-json", argoModule(version)+"@"+version)
	cmd.Dir = os.TempDir() // outside any module
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("locate argo-workflows %s CRDs (go mod download): %v: %s", version, err, out)
	}
	var info struct{ Dir, Error string }
	if err := json.Unmarshal(out, &info); err != nil {
		return "", err
	}
	if info.Error != "" || info.Dir == "" {
		return "", fmt.Errorf("go mod download argo-workflows %s: %s", version, info.Error)
	}
	return filepath.Join(info.Dir, "manifests", "base", "crds", argoCRDFlavour(version)), nil
}

// applyArgoCRDs creates the minimal Argo CRDs file by file and waits until
// they are Established.
func (c *Cluster) applyArgoCRDs(ctx context.Context) error {
	dir, err := argoCRDDir(c.opts.CacheDir, c.opts.ArgoVersion)
	if err != nil {
		return err
	}
	return c.createCRDFiles(ctx, filepath.Join(dir, "argoproj.io_*.yaml"), "no argoproj.io_*.yaml CRDs in "+dir)
}

// createCRDFiles creates the CRDs of the files matching pattern (one CRD each, in name order)
// and waits until they are Established; missing is the error when no file matches.
func (c *Cluster) createCRDFiles(ctx context.Context, pattern, missing string) error {
	files, _ := filepath.Glob(pattern)
	if len(files) == 0 {
		return errors.New(missing)
	}
	sort.Strings(files)
	var docs [][]byte
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		docs = append(docs, data)
	}
	return c.createCRDs(ctx, docs)
}

// createCRDs creates the CRDs (one YAML document each) and waits until they are Established.
func (c *Cluster) createCRDs(ctx context.Context, docs [][]byte) error {
	var names []string
	for _, data := range docs {
		obj := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(data, &obj.Object); err != nil {
			return fmt.Errorf("reading a CRD: %w", err)
		}
		_, err := c.dyn.Resource(crdGVR).Create(ctx, obj, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create CRD %s: %w", obj.GetName(), err)
		}
		names = append(names, obj.GetName())
	}
	for _, n := range names {
		err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			u, err := c.dyn.Resource(crdGVR).Get(ctx, n, metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
			for _, ci := range conds {
				m, _ := ci.(map[string]any)
				if m["type"] == "Established" && m["status"] == "True" {
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			return fmt.Errorf("CRD %s not established: %w", n, err)
		}
	}
	return nil
}

// ensureArgoNamespace creates namespace argo and the controller ConfigMap.
func (c *Cluster) ensureArgoNamespace(ctx context.Context) error {
	_, err := c.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ArgoNamespace}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	data := map[string]string{}
	// Move the internal/metrics/telemetry server off the default :9090.
	ms := fmt.Sprintf("enabled: true\nsecure: false\nport: %d\n", c.ports.argoMetrics)
	data["metricsConfig"] = ms
	data["telemetryConfig"] = ms
	for k, v := range c.opts.ArgoConfig {
		data[k] = v
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: ArgoConfigMap, Namespace: ArgoNamespace}, Data: data}
	_, err = c.kube.CoreV1().ConfigMaps(ArgoNamespace).Create(ctx, cm, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		_, err = c.kube.CoreV1().ConfigMaps(ArgoNamespace).Update(ctx, cm, metav1.UpdateOptions{})
	}
	return err
}

func (c *Cluster) startArgoLocked(ctx context.Context, version string, env map[string]string) error {
	if p := c.procs["workflow-controller"]; p != nil && !p.exited() {
		return fmt.Errorf("workflow-controller already running")
	}
	bin := filepath.Join(c.opts.CacheDir, "argo-"+version, "workflow-controller")
	if err := checkBin(bin, "argo-"+version); err != nil {
		return err
	}
	if portInUse(ArgoHealthPort) {
		return fmt.Errorf("port %d is in use: another workflow-controller (its health port is hard-coded) is running on this machine; stacks must run one at a time", ArgoHealthPort)
	}
	kubeconfig := c.kubeconfig
	if c.argoKubeconfig != "" {
		kubeconfig = c.argoKubeconfig
	}
	args := []string{
		"--kubeconfig=" + kubeconfig,
		"--namespace=" + ArgoNamespace,
		"--configmap=" + ArgoConfigMap,
		"--executor-image=quay.io/argoproj/argoexec:" + version,
		"--loglevel=info",
	}
	envs := []string{"LEADER_ELECTION_DISABLE=true"}
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		envs = append(envs, k+"="+env[k])
	}
	name := "workflow-controller"
	p, err := startProc(c.logDir, name, bin, args, envs, 5*time.Second)
	if err != nil {
		return err
	}
	c.addProc(p)
	c.argoVersion = version
	url := "http://127.0.0.1:" + strconv.Itoa(ArgoHealthPort) + "/healthz"
	return waitHTTP(ctx, p, url, nil, 60*time.Second)
}

// SetArgoKubeconfig makes the next (re)start of the workflow-controller reach the API server
// through kubeconfig (a test's proxy, say) instead of the stack's admin kubeconfig; "" restores
// the latter.
func (c *Cluster) SetArgoKubeconfig(kubeconfig string) {
	c.mu.Lock()
	c.argoKubeconfig = kubeconfig
	c.mu.Unlock()
}

// RestartArgo stops the running workflow-controller and starts the one of
// another (already built) version with the given extra environment, against
// the same stack. The CRDs stay those of the version the stack started with
// (minimal CRDs are compatible across 3.5–3.7).
func (c *Cluster) RestartArgo(ctx context.Context, version string, env map[string]string) error {
	c.StopArgo()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return fmt.Errorf("cluster stopped")
	}
	return c.startArgoLocked(ctx, version, env)
}

// StopArgo stops the workflow-controller (no-op if not running).
func (c *Cluster) StopArgo() {
	c.stopProc("workflow-controller")
}

// ArgoVersion is the version of the running (or last started) controller.
func (c *Cluster) ArgoVersion() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.argoVersion
}

// waitHTTP polls url until it answers 200, the process exits or timeout.
func waitHTTP(ctx context.Context, p *proc, url string, client *http.Client, timeout time.Duration) error {
	if client == nil {
		client = &http.Client{Timeout: 2 * time.Second}
	}
	deadline := time.Now().Add(timeout)
	var last string
	for {
		if err := p.exitErr(); err != nil {
			return err
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %s not healthy after %s (last: %s; see %s): %w", p.name, url, timeout, strings.TrimSpace(last), p.logPath, errTimeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
