// Package localcluster runs a local, real Kubernetes control plane for end-to-end
// tests on one machine, built from Go modules only (no Docker, no kind):
// etcd, kube-apiserver, kube-controller-manager, kwok (fake kubelet for
// Nodes annotated kwok.x-k8s.io/node=fake, with kubelet-like pod stages),
// the Argo workflow-controller of a chosen version, and on demand the
// Knative ApiServerSource receive adapter.
//
// The binaries come from ${ADH_CACHE:-$HOME/.cache/argo-disruption-handler},
// built by internal/localcluster/build-bins.sh. See docs/dev/e2e-cluster.md.
package localcluster

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Versions of the components (directories <cache>/<component>-<version>).
const (
	EtcdVersion        = "v3.6.16"
	KubernetesVersion  = "v1.35.4"
	KwokVersion        = "v0.7.0"
	DefaultArgoVersion = "v3.7.18"
)

// ArgoVersions are the workflow-controller versions build-bins.sh builds.
var ArgoVersions = []string{"v3.5.10", "v3.6.10", "v3.6.18", "v3.7.3", "v3.7.18", "v4.0.5", "v4.0.7"}

// Options configure Start. The zero value is usable.
type Options struct {
	// ArgoVersion of the workflow-controller (default DefaultArgoVersion).
	ArgoVersion string
	// ArgoEnv is extra environment for the workflow-controller, e.g.
	// ARGO_POD_STATUS_CAPTURE_FINALIZER=true, DEFAULT_REQUEUE_TIME=1s.
	ArgoEnv map[string]string
	// ArgoConfig is merged into the data of workflow-controller-configmap
	// (keys as in Argo's config, e.g. "workflowDefaults").
	ArgoConfig map[string]string
	// NoArgo: do not start the workflow-controller (CRDs, namespace and
	// ConfigMap are still created). Start it later with RestartArgo.
	NoArgo bool
	// NoControllerManager: do not run kube-controller-manager (then there
	// is no PodGC, no garbage collection, no namespace deletion).
	NoControllerManager bool
	// Karpenter runs Karpenter's KWOK provider (KarpenterVersion) and kube-scheduler: a workflow
	// whose pods select the NodePool KarpenterNodePool runs on nodes Karpenter launches, drains
	// and deletes. Needs the controller manager (its node lifecycle controller lifts the
	// not-ready taint of new nodes) and build-bins.sh karpenter kube-scheduler.
	Karpenter bool
	// Nodes is the number of kwok Nodes kwok-node-0..N-1 (default 1).
	Nodes int
	// CacheDir holds the binaries (default $ADH_CACHE or
	// $HOME/.cache/argo-disruption-handler).
	CacheDir string
	// Dir is the parent of the stack's temporary directory (default os.TempDir()).
	Dir string
	// KeepDir keeps the temporary directory (logs, certs, etcd data) on Stop.
	KeepDir bool
	// Logf receives progress messages (default: discard).
	Logf func(format string, args ...any)
}

// DefaultCacheDir is $ADH_CACHE or $HOME/.cache/argo-disruption-handler.
func DefaultCacheDir() string {
	if d := os.Getenv("ADH_CACHE"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		home = os.TempDir()
	}
	return filepath.Join(home, ".cache", "argo-disruption-handler")
}

type binaries struct {
	etcd, apiserver, kcm, kwok string
}

type ports struct {
	etcdClient, etcdPeer, apiserver, kcm, argoMetrics int
}

// Cluster is a running stack. Methods are safe for concurrent use.
type Cluster struct {
	opts       Options
	dir        string
	logDir     string
	kubeconfig string
	server     string
	token      string
	caData     []byte
	restCfg    *rest.Config
	// adapters are the processes StartAdapterSources started.
	adapters []string
	kube     kubernetes.Interface
	dyn      dynamic.Interface
	bins     binaries
	ports    ports

	lock        *os.File
	mu          sync.Mutex
	procs       map[string]*proc
	order       []string // start order of process names
	stopped     bool
	argoVersion string

	// Timings of the start-up phases, in order (for reporting).
	Timings []Timing
	// argoKubeconfig, when set, is the workflow-controller's kubeconfig (SetArgoKubeconfig).
	argoKubeconfig string
	// stopFuncs end what the stack runs in this process (servers), after its processes.
	stopFuncs []func()
}

// Timing is the duration of one start-up phase.
type Timing struct {
	Phase    string
	Duration time.Duration
}

func checkBin(path, component string) error {
	st, err := os.Stat(path)
	if err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		return fmt.Errorf("binary %s not found: run internal/localcluster/build-bins.sh %s (or with no argument for all)", path, component)
	}
	return nil
}

// Start starts the whole stack and returns when the workflow-controller is
// healthy. On error everything started so far is stopped.
func Start(ctx context.Context, opts Options) (c *Cluster, err error) {
	if opts.ArgoVersion == "" {
		opts.ArgoVersion = DefaultArgoVersion
	}
	if opts.CacheDir == "" {
		opts.CacheDir = DefaultCacheDir()
	}
	if opts.Nodes <= 0 {
		opts.Nodes = 1
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	c = &Cluster{opts: opts, procs: map[string]*proc{}}
	c.bins = binaries{
		etcd:      filepath.Join(opts.CacheDir, "etcd-"+EtcdVersion, "etcd"),
		apiserver: filepath.Join(opts.CacheDir, "kube-apiserver-"+KubernetesVersion, "kube-apiserver"),
		kcm:       filepath.Join(opts.CacheDir, "kube-controller-manager-"+KubernetesVersion, "kube-controller-manager"),
		kwok:      filepath.Join(opts.CacheDir, "kwok-"+KwokVersion, "kwok"),
	}
	for comp, b := range map[string]string{"etcd": c.bins.etcd, "kube-apiserver": c.bins.apiserver, "kwok": c.bins.kwok} {
		if err := checkBin(b, comp); err != nil {
			return nil, err
		}
	}
	if !opts.NoControllerManager {
		if err := checkBin(c.bins.kcm, "kube-controller-manager"); err != nil {
			return nil, err
		}
	}
	if !opts.NoArgo {
		if err := checkBin(filepath.Join(opts.CacheDir, "argo-"+opts.ArgoVersion, "workflow-controller"), "argo-"+opts.ArgoVersion); err != nil {
			return nil, err
		}
	}
	// One stack per machine (the workflow-controller's health port is fixed): wait for any other
	// test process's stack to stop instead of failing on the port.
	if c.lock, err = lockMachine(ctx, opts.CacheDir, opts.Logf); err != nil {
		return nil, err
	}
	if !opts.NoArgo {
		if portInUse(ArgoHealthPort) {
			c.unlock()
			return nil, fmt.Errorf("port %d is in use: another workflow-controller is running on this machine (its health port is hard-coded); stop it first", ArgoHealthPort)
		}
	}

	c.dir, err = os.MkdirTemp(opts.Dir, "adh-e2e-")
	if err != nil {
		c.unlock()
		return nil, err
	}
	c.logDir = filepath.Join(c.dir, "logs")
	if err := os.MkdirAll(c.logDir, 0o755); err != nil {
		c.unlock()
		return nil, err
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("%w (logs in %s)", err, c.logDir)
			keep := c.opts.KeepDir
			c.opts.KeepDir = true // keep the logs of a failed start
			c.Stop()
			c.opts.KeepDir = keep
			c = nil
		}
	}()

	begin := time.Now()
	phase := begin
	mark := func(name string) {
		now := time.Now()
		c.Timings = append(c.Timings, Timing{name, now.Sub(phase)})
		opts.Logf("cluster: %-28s %6.2fs", name, now.Sub(phase).Seconds())
		phase = now
	}

	for _, p := range []*int{&c.ports.etcdClient, &c.ports.etcdPeer, &c.ports.apiserver, &c.ports.kcm, &c.ports.argoMetrics} {
		if *p, err = FreePort(); err != nil {
			return c, err
		}
	}
	c.token = randomToken()
	tokenFile, err := writeTokenFile(c.dir, c.token)
	if err != nil {
		return c, err
	}
	saKey, saPub, err := writeServiceAccountKey(c.dir)
	if err != nil {
		return c, err
	}
	mark("prepare")

	if err = c.startEtcd(ctx); err != nil {
		return c, err
	}
	mark("etcd")
	if err = c.startAPIServer(ctx, tokenFile, saKey, saPub); err != nil {
		return c, err
	}
	mark("kube-apiserver ready")
	if !opts.NoControllerManager {
		if err = c.startControllerManager(ctx, saKey); err != nil {
			return c, err
		}
		mark("kube-controller-manager")
	}
	if err = c.applyArgoCRDs(ctx); err != nil {
		return c, err
	}
	if err = c.ensureArgoNamespace(ctx); err != nil {
		return c, err
	}
	mark("argo CRDs+namespace")
	if err = c.createNodes(ctx, opts.Nodes); err != nil {
		return c, err
	}
	c.mu.Lock()
	err = c.startKwokLocked()
	c.mu.Unlock()
	if err != nil {
		return c, err
	}
	if err = c.waitNodesReady(ctx, opts.Nodes, 30*time.Second); err != nil {
		return c, err
	}
	mark("kwok nodes ready")
	if opts.Karpenter {
		if opts.NoControllerManager {
			return c, fmt.Errorf("karpenter needs the controller manager (it lifts the not-ready taint of new nodes)")
		}
		if err = c.startKarpenter(ctx); err != nil {
			return c, err
		}
		mark("karpenter+scheduler ready")
	}
	if !opts.NoArgo {
		c.mu.Lock()
		err = c.startArgoLocked(ctx, opts.ArgoVersion, opts.ArgoEnv)
		c.mu.Unlock()
		if err != nil {
			return c, err
		}
		mark("workflow-controller healthy")
	}
	c.Timings = append(c.Timings, Timing{"total", time.Since(begin)})
	opts.Logf("cluster: started in %.2fs, kubeconfig %s", time.Since(begin).Seconds(), c.kubeconfig)
	return c, nil
}

// launch starts one process of the stack (env added to ours; grace: how long it gets to stop)
// and registers it.
func (c *Cluster) launch(name, bin string, args, env []string, grace time.Duration) (*proc, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, err := startProc(c.logDir, name, bin, args, env, grace)
	if err != nil {
		return nil, err
	}
	c.addProc(p)
	return p, nil
}

// onStop registers f to run when the cluster stops, after its processes.
func (c *Cluster) onStop(f func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopFuncs = append(c.stopFuncs, f)
}

// stopProc stops the named process of the stack (a no-op when it does not run).
func (c *Cluster) stopProc(name string) {
	c.mu.Lock()
	p := c.procs[name]
	delete(c.procs, name)
	c.mu.Unlock()
	p.stop()
}

func (c *Cluster) addProc(p *proc) {
	c.procs[p.name] = p
	for _, n := range c.order {
		if n == p.name {
			return
		}
	}
	c.order = append(c.order, p.name)
}

func (c *Cluster) startEtcd(ctx context.Context) error {
	client := "http://127.0.0.1:" + strconv.Itoa(c.ports.etcdClient)
	peer := "http://127.0.0.1:" + strconv.Itoa(c.ports.etcdPeer)
	args := []string{
		"--name=e2e",
		"--data-dir=" + filepath.Join(c.dir, "etcd"),
		"--listen-client-urls=" + client,
		"--advertise-client-urls=" + client,
		"--listen-peer-urls=" + peer,
		"--initial-advertise-peer-urls=" + peer,
		"--initial-cluster=e2e=" + peer,
		"--unsafe-no-fsync",
		"--log-level=warn",
		"--quota-backend-bytes=4294967296",
	}
	p, err := c.launch("etcd", c.bins.etcd, args, nil, 5*time.Second)
	if err != nil {
		return err
	}
	return waitHTTP(ctx, p, client+"/health", nil, 30*time.Second)
}

func (c *Cluster) startAPIServer(ctx context.Context, tokenFile, saKey, saPub string) error {
	certDir := filepath.Join(c.dir, "pki")
	args := []string{
		"--etcd-servers=http://127.0.0.1:" + strconv.Itoa(c.ports.etcdClient),
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(c.ports.apiserver),
		"--cert-dir=" + certDir,
		"--token-auth-file=" + tokenFile,
		"--authorization-mode=RBAC",
		"--service-account-key-file=" + saPub,
		"--service-account-signing-key-file=" + saKey,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-cluster-ip-range=10.96.0.0/16",
		"--endpoint-reconciler-type=none",
		"--disable-admission-plugins=ServiceAccount",
		"--enable-priority-and-fairness=false",
		"--allow-privileged=true",
		"--profiling=false",
	}
	p, err := c.launch("kube-apiserver", c.bins.apiserver, args, nil, 10*time.Second)
	if err != nil {
		return err
	}
	// The self-signed serving certificate (+ its CA) appears in cert-dir.
	crt := filepath.Join(certDir, "apiserver.crt")
	deadline := time.Now().Add(30 * time.Second)
	for {
		if err := p.exitErr(); err != nil {
			return err
		}
		if b, err := os.ReadFile(crt); err == nil && len(b) > 0 {
			c.caData = b
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kube-apiserver did not write %s (see %s)", crt, p.logPath)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	c.server = "https://127.0.0.1:" + strconv.Itoa(c.ports.apiserver)
	c.kubeconfig = filepath.Join(c.dir, "kubeconfig")
	if err := WriteKubeconfig(c.kubeconfig, c.server, c.caData, c.token); err != nil {
		return err
	}
	c.restCfg = restConfig(c.server, c.caData, c.token)
	if c.kube, err = kubernetes.NewForConfig(c.restCfg); err != nil {
		return err
	}
	if c.dyn, err = dynamic.NewForConfig(c.restCfg); err != nil {
		return err
	}
	deadline = time.Now().Add(90 * time.Second)
	var last error
	for {
		if err := p.exitErr(); err != nil {
			return err
		}
		rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		_, last = c.kube.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(rctx)
		cancel()
		if last == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kube-apiserver not ready: %v (see %s)", last, p.logPath)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func (c *Cluster) startControllerManager(ctx context.Context, saKey string) error {
	args := []string{
		"--kubeconfig=" + c.kubeconfig,
		// No --authentication/authorization-kubeconfig: its own /healthz is
		// always allowed, and with them it polls the (here non-existent)
		// extension-apiserver-authentication ConfigMap and logs errors.
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(c.ports.kcm),
		"--cert-dir=" + filepath.Join(c.dir, "kcm-pki"),
		"--controllers=*",
		"--leader-elect=false",
		"--use-service-account-credentials=false",
		"--service-account-private-key-file=" + saKey,
		"--root-ca-file=" + filepath.Join(c.dir, "pki", "apiserver.crt"),
		"--cluster-name=e2e",
		"--profiling=false",
	}
	p, err := c.launch("kube-controller-manager", c.bins.kcm, args, nil, 5*time.Second)
	if err != nil {
		return err
	}
	insecure := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} // its own self-signed cert
	return waitHTTP(ctx, p, "https://127.0.0.1:"+strconv.Itoa(c.ports.kcm)+"/healthz", insecure, 60*time.Second)
}

// Kubeconfig is the path of the admin kubeconfig (user in system:masters).
func (c *Cluster) Kubeconfig() string { return c.kubeconfig }

// RESTConfig returns a copy of the admin rest.Config.
func (c *Cluster) RESTConfig() *rest.Config { return rest.CopyConfig(c.restCfg) }

// Kube is an admin clientset.
func (c *Cluster) Kube() kubernetes.Interface { return c.kube }

// Dynamic is an admin dynamic client.
func (c *Cluster) Dynamic() dynamic.Interface { return c.dyn }

// AdminToken is the bearer token of the admin user.
func (c *Cluster) AdminToken() string { return c.token }

// Dir is the stack's temporary directory.
func (c *Cluster) Dir() string { return c.dir }

// LogDir holds one <process>.log per started process.
func (c *Cluster) LogDir() string { return c.logDir }

// KubectlPath is the kubectl built by build-bins.sh ("" if not built).
func (c *Cluster) KubectlPath() string {
	p := filepath.Join(c.opts.CacheDir, "kubectl-"+KubernetesVersion, "kubectl")
	if checkBin(p, "kubectl") != nil {
		return ""
	}
	return p
}

// PIDs returns the process id of every running child, by name.
func (c *Cluster) PIDs() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := map[string]int{}
	for n, p := range c.procs {
		if !p.exited() {
			m[n] = p.pid()
		}
	}
	return m
}

// Keep makes Stop leave the temporary directory (logs, kubeconfig) in place, for a failed test.
func (c *Cluster) Keep() {
	c.mu.Lock()
	c.opts.KeepDir = true
	c.mu.Unlock()
}

// Stop stops every process the stack started (reverse start order, SIGTERM
// to the process group, SIGKILL after a grace period) and removes the
// temporary directory unless Options.KeepDir. Safe to call more than once.
func (c *Cluster) Stop() {
	if c == nil {
		return
	}
	c.mu.Lock()
	c.stopped = true
	var ps []*proc
	for i := len(c.order) - 1; i >= 0; i-- {
		if p := c.procs[c.order[i]]; p != nil {
			ps = append(ps, p)
		}
	}
	c.procs = map[string]*proc{}
	stopFuncs := c.stopFuncs
	c.stopFuncs = nil
	c.mu.Unlock()
	for _, p := range ps {
		p.stop()
	}
	for _, f := range stopFuncs {
		f()
	}
	if !c.opts.KeepDir && c.dir != "" {
		_ = os.RemoveAll(c.dir)
	}
	c.unlock()
}

// StopOnSignal stops the stack when the process receives SIGINT or SIGTERM
// and then exits with status 130 (or calls onSignal instead of exiting if
// it is not nil). The returned function uninstalls the handler.
func (c *Cluster) StopOnSignal(onSignal func(os.Signal)) (cancel func()) {
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case s := <-ch:
			c.Stop()
			if onSignal != nil {
				onSignal(s)
				return
			}
			os.Exit(130)
		case <-done:
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			signal.Stop(ch)
			close(done)
		})
	}
}

// ErrTimeout is wrapped by errors about something not becoming ready.
var ErrTimeout = errTimeout
