//go:build e2e

// Command bench measures the function's speed and memory targets on this machine and writes
// docs/dev/BENCHMARKS.md: every figure beside its target, the machine, and how to reproduce.
// Targets are read from the report, never asserted.
//
//	go run -tags e2e ./test/bench                       # everything (~14 min here)
//	go run -tags e2e ./test/bench -parts micro,cold -out -   # a subset, report on stdout
//
// Parts:
//   - micro:      Go benchmarks (go test -bench, parsed): the irrelevant event, a 5,000-node
//     compressed workflow (fake clientsets, production wiring).
//   - repairs:    on the local real control plane (localcluster: etcd, kube-apiserver,
//     kube-controller-manager, kwok, the real Argo controller, the real ApiServerSource adapter),
//     the handler built in-process as function.Start builds it, its clients counting every API
//     call: pods of real workflows deleted one by one, each delete event delivered by the
//     adapter → API calls per repair, event received → task result patched.
//   - compressed: the same in-process handler on workflows with 5,000 compressed nodes stored in
//     the real API server.
//   - cold:       exec of the built binary (cmd/argo-disruption-handler) → readiness → first
//     event (a real delete event captured from the adapter) handled; binary size; RSS.
//   - burst:      N workflows with one running pod each, all pods force-deleted at once, the
//     binary fed by the real adapter (through a counting proxy; with via:broker, through the
//     real Broker data plane) → until all left Running.
//   - node:       a Karpenter-labelled Node carrying N running workflow pods deleted with its
//     machine gone (kwok stopped); the adapter delivers the Node's delete event to the in-process
//     handler → API calls per pod, event → every task result complete, → every workflow moved.
//   - sweep:      -sweep-workflows Running workflows written to the API server (a tenth with 100
//     nodes, 20 stuck), the binary fed PingSource ticks one after another → ticks until all
//     stuck are repaired, RSS throughout, each tick's time against its budget.
//   - scale:      the in-process handler against cluster-sized state on the real kube-apiserver:
//     an EC2 message for an instance not in a cluster of -scale-nodes Karpenter Nodes and
//     NodeClaims (first message, instance index cold; 1 s later, warm; a known instance); EC2
//     `shutting-down` then `terminated` for a machine with -scale-pair-pods workflow pods against
//     `terminated` alone; Reference-mode deletes of -scale-pods finished pods of one workflow →
//     API calls, handler time, memory per event.
//   - shipped:    the chart's ApiServerSources (one adapter each, configured as its reconciler
//     would) posting to the real Broker with the shipped Triggers, an ordinary workload with
//     nothing disrupted (-shipped-workflows of 3 sequential steps, podGC OnPodCompletion) →
//     deliveries to the function per workflow pod; then an idle minute → deliveries while idle.
//   - karpenter:  on a stack of its own with the real Karpenter and kube-scheduler, -karpenter-pods
//     workflow pods on the nodes Karpenter launches for them, the events through the real Broker
//     to the binary; every NodeClaim deleted at once → evictions, repairs, workflows moved.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"function/config"
	"function/internal/argoworkflow"
	"function/internal/localcluster"
)

// defaultParts is every part (run() orders them itself).
const defaultParts = "micro,repairs,compressed,cold,burst,node,scale,sweep,shipped,karpenter"

const (
	nsLat   = "bench-repairs"
	nsBig   = "bench-compressed"
	nsBurst = "bench-burst"
)

type options struct {
	Parts          map[string]bool
	Out            string
	Argo           string
	ArgoEnv        map[string]string
	Nodes          int
	Repairs        int
	ColdTrials     int
	CompressedRuns int
	BigNodes       int
	Burst          int
	NodePods       int
	ShippedWfs     int
	KarpenterPods  int
	ScaleNodes     int
	ScalePods      int
	ScalePairPods  int
	SweepWorkflows int
	SweepTicks     int
	BurstBound     time.Duration
	Bursts         []burstConfig
	BurstsSpec     string
	Count          int
	Benchtime      string
	Bigtime        string
	Keep           bool
	Source         string
}

// phase is one timed step of the command itself.
type phase struct {
	Name string
	Took time.Duration
	Load string // load average when it ended
}

// result is everything one run measured.
type result struct {
	Opts       options
	Machine    machine
	Started    time.Time
	Took       time.Duration
	Phases     []phase
	Micro      *microResult
	Latency    *latencyResult
	Compressed *compressedResult
	Cold       *coldResult
	Bursts     []*burstResult
	Node       *nodeResult
	Scale      *scaleResult
	Sweep      *sweepScaleResult
	Karpenter  *karpenterResult
	Shipped    *shippedResult
	ArgoEnv    map[string]string // the controller's environment as started
	StackLock  time.Duration     // waited for another stack to stop
	StackDir   string            // kept with -keep
	StackStart time.Duration
	Errors     []string
}

func main() {
	var o options
	parts := flag.String("parts", defaultParts, "comma-separated parts to run")
	flag.StringVar(&o.Out, "out", "docs/dev/BENCHMARKS.md", `report file ("-": stdout), relative to the module root`)
	flag.StringVar(&o.Argo, "argo", "v3.5.10", "Argo workflow-controller version (built by internal/localcluster/build-bins.sh)")
	argoEnv := flag.String("argo-env", "", "extra controller environment, K=V,K=V (e.g. ARGO_QPS=50,ARGO_BURST=100)")
	flag.IntVar(&o.Nodes, "nodes", 10, "kwok Nodes (110 pods each)")
	flag.IntVar(&o.Repairs, "repairs", 200, "sequential repairs for the API-call count and the latency")
	flag.IntVar(&o.ColdTrials, "cold", 5, "cold starts")
	flag.IntVar(&o.CompressedRuns, "compressed-runs", 5, "repairs of a compressed workflow on the real API server")
	flag.IntVar(&o.BigNodes, "big-nodes", 5000, "nodes of the compressed workflow (real API server part)")
	flag.IntVar(&o.Burst, "burst", 500, "workflows in the burst")
	flag.IntVar(&o.KarpenterPods, "karpenter-pods", 110, "workflow pods on the nodes Karpenter launches, all NodeClaims then deleted (karpenter part)")
	flag.IntVar(&o.ShippedWfs, "shipped-workflows", 20, "workflows of 3 sequential steps in the shipped part (nothing disrupted)")
	flag.IntVar(&o.NodePods, "node-pods", 110, "workflow pods on the Node deleted in the node part (110: the EKS default max-pods)")
	flag.IntVar(&o.ScaleNodes, "scale-nodes", 5000, "Karpenter Nodes (and NodeClaims) in the cluster for the scale part's EC2 messages")
	flag.IntVar(&o.ScalePods, "scale-pods", 5000, "finished pods of one workflow deleted in the scale part (one Reference-mode delete each)")
	flag.IntVar(&o.SweepWorkflows, "sweep-workflows", 10000, "Running workflows of the sweep part (a tenth with 100 nodes each, 20 stuck)")
	flag.IntVar(&o.SweepTicks, "sweep-ticks", 5, "PingSource ticks the sweep part posts at most")
	flag.IntVar(&o.ScalePairPods, "scale-pair-pods", 20, "workflow pods on each machine of the scale part's EC2 shutting-down/terminated pair")
	flag.DurationVar(&o.BurstBound, "burst-bound", 4*time.Minute, "how long the burst is followed")
	bursts := flag.String("bursts", defaultBursts, `burst configurations separated by ";": "default", or "fn:K=V,… argo:K=V,… via:broker" (function environment; controller environment, applied by restarting it; delivery through the Broker data plane)`)
	flag.IntVar(&o.Count, "count", 5, "go test -count for the micro benchmarks")
	flag.StringVar(&o.Benchtime, "benchtime", "1s", "go test -benchtime for the fast micro benchmarks")
	flag.StringVar(&o.Bigtime, "bigtime", "10x", "go test -benchtime for the 5,000-node micro benchmarks")
	flag.StringVar(&o.Source, "source", "", "describes the measured code when it is not a git checkout (e.g. an export of a commit)")
	render := flag.String("render", "", "write the report from a kept bench-result.json instead of measuring (after a change of the report's wording)")
	flag.BoolVar(&o.Keep, "keep", false, "keep the stack's directory (logs of every process and of the function) after the run")
	flag.Parse()
	o.Parts = map[string]bool{}
	for _, p := range strings.Split(*parts, ",") {
		if p = strings.TrimSpace(p); p != "" {
			o.Parts[p] = true
		}
	}
	o.ArgoEnv = map[string]string{}
	for _, kv := range strings.Split(*argoEnv, ",") {
		if k, v, ok := strings.Cut(strings.TrimSpace(kv), "="); ok {
			o.ArgoEnv[k] = v
		}
	}
	var err error
	o.BurstsSpec = *bursts
	if o.Bursts, err = parseBursts(*bursts); err != nil {
		fatal(err)
	}
	if err := chdirRoot(); err != nil {
		fatal(err)
	}
	if *render != "" {
		b, err := os.ReadFile(*render)
		if err != nil {
			fatal(err)
		}
		var r result
		if err := json.Unmarshal(b, &r); err != nil {
			fatal(fmt.Errorf("%s: %w", *render, err))
		}
		r.Opts.Out = o.Out
		if err := writeReport(&r); err != nil {
			fatal(err)
		}
		return
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	r := run(ctx, o)
	if err := writeReport(r); err != nil {
		fatal(err)
	}
	if r.StackDir != "" {
		// Every measurement, raw, beside the kept logs (for a closer look).
		if b, err := json.MarshalIndent(r, "", " "); err == nil {
			_ = os.WriteFile(filepath.Join(r.StackDir, "bench-result.json"), b, 0o644)
			logf("raw results in %s", filepath.Join(r.StackDir, "bench-result.json"))
		}
	}
	if len(r.Errors) > 0 {
		fmt.Fprintln(os.Stderr, "bench: errors:\n  "+strings.Join(r.Errors, "\n  "))
		os.Exit(1)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s bench: %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

// chdirRoot moves to the module root (the folder of go.mod), where the paths of the command are.
func chdirRoot() error {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return err
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return fmt.Errorf("run inside the module (go env GOMOD is empty)")
	}
	return os.Chdir(filepath.Dir(gomod))
}

func run(ctx context.Context, o options) *result {
	r := &result{Opts: o, Started: time.Now()}
	r.Machine = readMachine(runtime.NumCPU())
	if o.Source != "" {
		r.Machine.GitHead, r.Machine.GitDirty = o.Source, nil
	}
	mark := time.Now()
	step := func(name string) {
		r.Phases = append(r.Phases, phase{Name: name, Took: time.Since(mark), Load: loadAvg()})
		logf("%s: %.1fs (load %s)", name, time.Since(mark).Seconds(), loadAvg())
		mark = time.Now()
	}
	fail := func(part string, err error) {
		r.Errors = append(r.Errors, part+": "+err.Error())
		logf("%s FAILED: %v", part, err)
	}
	defer func() { r.Took = time.Since(r.Started) }()

	micro := func() {
		logf("micro: go test -bench (compiles the benchmark binaries first)")
		m, err := runMicro(ctx, o.Count, o.Benchtime, o.Bigtime)
		r.Micro = m
		if err != nil {
			fail("micro", err)
		}
		step("micro benchmarks (go test: build + run)")
	}
	if !needsMainStack(o.Parts) && !o.Parts["karpenter"] {
		if o.Parts["micro"] {
			micro()
		}
		return r
	}
	tmp, err := os.MkdirTemp("", "adh-bench-")
	if err != nil {
		fail("setup", err)
		return r
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, "argo-disruption-handler")
	if o.Parts["cold"] || o.Parts["burst"] || o.Parts["sweep"] || o.Parts["karpenter"] {
		start := time.Now()
		out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/argo-disruption-handler").CombinedOutput()
		if err != nil {
			fail("build", fmt.Errorf("%v\n%s", err, out))
			return r
		}
		r.Cold = &coldResult{Binary: bin, BuildTook: time.Since(start)}
		if st, err := os.Stat(bin); err == nil {
			r.Cold.BinaryBytes = st.Size()
		}
		step("go build ./cmd/argo-disruption-handler")
	}

	components := []string{"etcd", "kube-apiserver", "kube-controller-manager", "kwok", "adapter", "broker", "argo-" + o.Argo}
	if o.Parts["karpenter"] {
		components = append(components, "kube-scheduler", "karpenter")
	}
	if err := exec.CommandContext(ctx, "internal/localcluster/build-bins.sh", components...).Run(); err != nil {
		fail("build-bins", err)
		return r
	}
	step("internal/localcluster/build-bins.sh (cached binaries)")
	if needsMainStack(o.Parts) {
		runMainStack(ctx, o, r, bin, micro, step, fail)
	} else if o.Parts["micro"] {
		micro()
	}
	if o.Parts["karpenter"] && ctx.Err() == nil {
		k, err := runKarpenter(ctx, o, bin, logf)
		r.Karpenter = k
		if err != nil {
			fail("karpenter", err)
		}
		step(fmt.Sprintf("karpenter: its own stack, %d workflow pods on Karpenter's nodes, every NodeClaim deleted", o.KarpenterPods))
	}
	return r
}

// needsMainStack reports whether a part runs on the stack without Karpenter.
func needsMainStack(parts map[string]bool) bool {
	for _, p := range []string{"repairs", "compressed", "cold", "burst", "node", "scale", "sweep", "shipped"} {
		if parts[p] {
			return true
		}
	}
	return false
}

// runMainStack runs the parts that share the stack without Karpenter, micro included (while
// this process holds the machine's stack lock).
func runMainStack(ctx context.Context, o options, r *result, bin string, micro func(), step func(string), fail func(string, error)) {
	r.ArgoEnv = o.ArgoEnv
	begin := time.Now()
	c, err := localcluster.Start(ctx, localcluster.Options{ArgoVersion: o.Argo, Nodes: o.Nodes, ArgoEnv: o.ArgoEnv, KeepDir: true, Logf: logf})
	if err != nil {
		fail("cluster", err)
		return
	}
	stopSignal := c.StopOnSignal(nil)
	defer func() {
		stopSignal()
		c.Stop()
		if len(r.Errors) == 0 && !o.Keep {
			_ = os.RemoveAll(c.Dir())
		} else {
			r.StackDir = c.Dir()
			logf("logs kept in %s", c.LogDir())
		}
	}()
	for _, t := range c.Timings {
		if t.Phase == "total" {
			r.StackStart = t.Duration
		}
	}
	r.StackLock = time.Since(begin) - r.StackStart
	step("control plane start (etcd, kube-apiserver, kcm, kwok, Argo " + o.Argo + ")")
	if o.Parts["micro"] {
		// Run while this process holds the machine's stack lock: no other engineer's e2e stack
		// competes for the cores (this stack idles meanwhile).
		micro()
	}
	e, err := newEnv(c, o.Nodes, logf)
	if err != nil {
		fail("cluster", err)
		return
	}

	var coldEvents []captured
	if o.Parts["repairs"] || o.Parts["cold"] {
		lat, evs, err := repairsPhase(ctx, e, o, step)
		if err != nil {
			fail("repairs", err)
		}
		if o.Parts["repairs"] {
			r.Latency = lat
		}
		coldEvents = evs
	}
	if o.Parts["compressed"] && ctx.Err() == nil {
		ip, err := newInProcess(c, "function-compressed.log", func(cfg *config.Config) {
			cfg.ControllerInstanceID, cfg.Namespaces = foreignInstance, []string{nsBig}
		})
		if err == nil {
			r.Compressed, err = runCompressed(ctx, e, ip, nsBig, o.BigNodes, o.CompressedRuns)
		}
		if err != nil {
			fail("compressed", err)
		}
		step(fmt.Sprintf("compressed: %d repairs of %d-node workflows", o.CompressedRuns, o.BigNodes))
	}
	if o.Parts["cold"] && ctx.Err() == nil && r.Cold != nil {
		r.Cold.Trials, err = runCold(ctx, e, bin, c.Kubeconfig(), c.LogDir(), nsLat, coldEvents)
		if err != nil {
			fail("cold", err)
		}
		step(fmt.Sprintf("cold: %d starts of the binary", len(coldEvents)))
	}
	if o.Parts["shipped"] && ctx.Err() == nil {
		sh, err := runShipped(ctx, e, o.ShippedWfs, 3, time.Minute)
		r.Shipped = sh
		if err != nil {
			fail("shipped", err)
		}
		step(fmt.Sprintf("shipped: %d undisrupted workflows through the chart's sources and Triggers, then an idle minute", o.ShippedWfs))
	}
	if o.Parts["node"] && ctx.Err() == nil {
		nd, err := runNode(ctx, e, o.NodePods)
		r.Node = nd
		if err != nil {
			fail("node", err)
		}
		step(fmt.Sprintf("node: a Node with %d workflow pods deleted", o.NodePods))
	}
	if o.Parts["burst"] {
		current := o.ArgoEnv
		for i, bc := range o.Bursts {
			if ctx.Err() != nil {
				break
			}
			env := merged(o.ArgoEnv, bc.ArgoEnv)
			if !sameEnv(env, current) {
				if err := c.RestartArgo(ctx, o.Argo, env); err != nil {
					fail("burst", err)
					break
				}
				current = env
			}
			b, fn, err := runBurst(ctx, e, bin, fmt.Sprintf("%s-%d", nsBurst, i+1), o.Burst, bc, o.BurstBound)
			fn.Stop()
			if b != nil {
				b.Label, b.ArgoEnv = bc.Label, env
				r.Bursts = append(r.Bursts, b)
			}
			if err != nil {
				fail("burst", err)
			}
			step(fmt.Sprintf("burst %d (%s): %d workflows (set-up, deletion, follow-up)", i+1, bc.Label, o.Burst))
		}
	}
	if o.Parts["sweep"] && ctx.Err() == nil {
		sw, fn, err := runSweepScale(ctx, e, bin, o.SweepWorkflows, o.SweepWorkflows/10, 100, 20, o.SweepTicks)
		fn.Stop()
		r.Sweep = sw
		if err != nil {
			fail("sweep", err)
		}
		step(fmt.Sprintf("sweep: %d Running workflows, ticks until the stuck ones are repaired", o.SweepWorkflows))
	}
	if o.Parts["scale"] && ctx.Err() == nil {
		// Last: its thousands of Nodes, even removed, are nothing the other parts should meet.
		sc, err := runScale(ctx, e, o, step)
		r.Scale = sc
		if err != nil {
			fail("scale", err)
		}
	}
}

// burstConfig is one burst's settings.
type burstConfig struct {
	Label   string
	Via     string // "" (the adapter posts to the function) or viaBroker
	FnEnv   map[string]string
	ArgoEnv map[string]string
}

// defaultBursts: what a default installation does, the same through the Broker data plane, then
// both clients' rates raised (the controller per Argo's scaling advice) to see what the machine
// itself allows.
const defaultBursts = "default; via:broker; fn:ADH_KUBE_QPS=400,ADH_KUBE_BURST=800 argo:ARGO_QPS=200,ARGO_BURST=400"

func parseBursts(spec string) ([]burstConfig, error) {
	var out []burstConfig
	for _, one := range strings.Split(spec, ";") {
		one = strings.TrimSpace(one)
		if one == "" {
			continue
		}
		bc := burstConfig{Label: one, FnEnv: map[string]string{}, ArgoEnv: map[string]string{}}
		if one != "default" {
			for _, f := range strings.Fields(one) {
				kind, kvs, ok := strings.Cut(f, ":")
				if ok && kind == "via" {
					if kvs != viaBroker {
						return nil, fmt.Errorf("burst configuration %q: via:%s is not a delivery path (want via:%s)", one, kvs, viaBroker)
					}
					bc.Via = kvs
					continue
				}
				if !ok || (kind != "fn" && kind != "argo") {
					return nil, fmt.Errorf("burst configuration %q: want fn:K=V,…, argo:K=V,… or via:%s", one, viaBroker)
				}
				for _, kv := range strings.Split(kvs, ",") {
					k, v, ok := strings.Cut(kv, "=")
					if !ok {
						return nil, fmt.Errorf("burst configuration %q: %q is not K=V", one, kv)
					}
					if kind == "fn" {
						bc.FnEnv[k] = v
					} else {
						bc.ArgoEnv[k] = v
					}
				}
			}
		}
		out = append(out, bc)
	}
	return out, nil
}

func merged(a, b map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

func sameEnv(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// repairsPhase: the in-process handler behind a sink fed by the adapter; o.Repairs pods deleted
// one at a time (figures 2, 3), then o.ColdTrials more whose delete events are captured for the
// cold starts.
func repairsPhase(ctx context.Context, e *env, o options, step func(string)) (*latencyResult, []captured, error) {
	ip, err := newInProcess(e.c, "function-inprocess.log", func(cfg *config.Config) {
		cfg.Namespaces = []string{nsLat}
	})
	if err != nil {
		return nil, nil, err
	}
	s, err := startSink(ip.Handler)
	if err != nil {
		return nil, nil, err
	}
	defer s.Close()
	if err := e.c.StartAdapter(s.URL, []string{nsLat}, argoworkflow.LabelWorkflow); err != nil {
		return nil, nil, err
	}
	defer e.c.StopAdapter()
	repairs := 0
	if o.Parts["repairs"] {
		repairs = o.Repairs
	}
	cold := 0
	if o.Parts["cold"] {
		cold = o.ColdTrials
	}
	vs, took, err := e.prepare(ctx, nsLat, "rep", repairs+cold)
	if err != nil {
		return nil, nil, err
	}
	for _, v := range vs[repairs:] {
		s.keep(v.Pod)
	}
	waitGrace(ctx, vs)
	waitQuiet(ctx, s.Last, 2*time.Second, 60*time.Second)
	step(fmt.Sprintf("repairs: set-up of %d workflows (submit → pods Running → task results)", len(vs)))
	var lat *latencyResult
	if repairs > 0 {
		lat, err = runLatency(ctx, e, s, nsLat, vs[:repairs])
		if err != nil {
			return nil, nil, err
		}
		lat.SetupTook = took
		lat.LogPath = filepath.Join(e.c.LogDir(), "function-inprocess.log")
		step(fmt.Sprintf("repairs: %d pods deleted one by one, each repaired", repairs))
	}
	var evs []captured
	for _, v := range vs[repairs:] {
		ch := s.expect(v.Pod)
		if _, err := e.deletePod(ctx, nsLat, v.Pod); err != nil {
			return lat, nil, err
		}
		select {
		case <-ch:
		case <-time.After(30 * time.Second):
			return lat, nil, fmt.Errorf("no delete event for pod %s", v.Pod)
		}
		s.mu.Lock()
		evs = append(evs, captured{v: v, raw: s.captured[v.Pod]})
		s.mu.Unlock()
	}
	return lat, evs, nil
}
