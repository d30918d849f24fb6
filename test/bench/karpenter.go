//go:build e2e

package main

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"function/internal/argoworkflow"
	"function/internal/localcluster"
	"function/internal/localcluster/scenario"
	"function/internal/repair"
)

const nsKarpenter = "bench-karpenter"

// karpenterStop is how long a step evicted by Karpenter keeps running, as a kubelet stopping
// its containers would (with kwok's instant stop Karpenter's Evicted Event comes after the pod).
const karpenterStop = 3 * time.Second

// karpenterResult is the karpenter part: the real Karpenter terminating every NodeClaim of its
// NodePool at once (kubectl delete nodeclaim, or a wave of spot interruptions) while the nodes
// carry running workflow pods, the events reaching the function through the Broker.
type karpenterResult struct {
	Argo        string
	Workflows   int
	Nodes       int // Karpenter's nodes carrying the pods
	StackStart  time.Duration
	BrokerReady time.Duration
	SetupTook   time.Duration
	// DeleteWindow is from the first NodeClaim delete sent to the last accepted.
	DeleteWindow time.Duration
	// Per pod: its deletionTimestamp seen (Karpenter's eviction), from the first delete.
	Evicted map[string]time.Duration
	// Per workflow, from the first delete: task result completed by the function, phase left
	// Running; and the repair's delay after its own pod's eviction.
	Repaired, LeftRunning map[string]time.Duration
	AfterEviction         []time.Duration
	Reasons               map[string]int // the record's reason on the Workflows
	Phases                map[string]int
	Lost                  []string
	Requests, Ingress     []proxied
	FnLog                 fnLogStats
	RSSMax                int64
	Bound, Took           time.Duration
}

// runKarpenter starts its own stack with Karpenter (the scale part's thousands of fake Karpenter
// Nodes must never meet a real Karpenter), runs n workflows on the nodes Karpenter launches for
// them, then deletes every NodeClaim at once and follows evictions, repairs and workflows.
func runKarpenter(ctx context.Context, o options, bin string, logf func(string, ...any)) (res *karpenterResult, err error) {
	res = &karpenterResult{Argo: o.Argo, Workflows: o.KarpenterPods, Bound: o.BurstBound}
	c, err := localcluster.Start(ctx, localcluster.Options{ArgoVersion: o.Argo, Karpenter: true, ArgoEnv: o.ArgoEnv, KeepDir: true, Logf: logf})
	if err != nil {
		return res, err
	}
	stopSignal := c.StopOnSignal(nil)
	defer func() {
		stopSignal()
		c.Stop()
		if err == nil && !o.Keep {
			_ = os.RemoveAll(c.Dir())
		} else {
			logf("karpenter: logs kept in %s", c.LogDir())
		}
	}()
	for _, t := range c.Timings {
		if t.Phase == "total" {
			res.StackStart = t.Duration
		}
	}
	e, err := newEnv(c, 0, logf)
	if err != nil {
		return res, err
	}
	ns := nsKarpenter
	if err := c.EnsureNamespace(ctx, ns); err != nil {
		return res, err
	}
	fn, err := scenario.ExecFunction(bin, c.Kubeconfig(), filepath.Join(c.LogDir(), "function-"+ns+".log"),
		map[string]string{"ADH_NAMESPACES": ns, "ADH_LOG_LEVEL": "info"})
	if err != nil {
		return res, err
	}
	defer fn.Stop()
	if _, _, err := fn.WaitReady(ctx, 20*time.Second, time.Millisecond); err != nil {
		return res, err
	}
	proxy, err := newCountingProxy(fn.URL)
	if err != nil {
		return res, err
	}
	sink, ingress, stopIngress, err := e.throughBroker(ctx, proxy)
	if err != nil {
		return res, err
	}
	defer stopIngress()
	res.BrokerReady = e.broker.Ready
	// What the chart's ApiServerSources watch: workflow pods, Events (Karpenter writes those
	// about Nodes and NodeClaims in default), Nodes and NodeClaims.
	if err := c.StartAdapterFor(sink, []string{ns, "default"}, []localcluster.AdapterResource{
		{Version: "v1", Resource: "pods", Selector: argoworkflow.LabelWorkflow},
		{Version: "v1", Resource: "events"},
		{Version: "v1", Resource: "nodes"},
		{Group: "karpenter.sh", Version: "v1", Resource: "nodeclaims"},
	}); err != nil {
		return res, err
	}
	vs, took, err := e.prepareAt(ctx, ns, "karp", res.Workflows, func(int) placement {
		return placement{NodePool: localcluster.KarpenterNodePool, TerminateDelay: karpenterStop}
	})
	if err != nil {
		return res, err
	}
	res.SetupTook = took
	hosts := map[string]bool{}
	for _, v := range vs {
		hosts[v.Host] = true
	}
	res.Nodes = len(hosts)
	var claims []string
	for h := range hosts {
		claim, err := c.NodeClaimOf(ctx, h)
		if err != nil {
			return res, err
		}
		claims = append(claims, claim)
	}
	sort.Strings(claims)

	tr, stopTracking := e.track(ns)
	defer stopTracking()
	ev := &evictions{at: map[string]time.Duration{}}
	stopPods := make(chan struct{})
	defer close(stopPods)
	<-e.follow(ns, schema.GroupVersionResource{Version: "v1", Resource: "pods"}, ev.onPod, stopPods)
	waitGrace(ctx, vs)
	waitQuiet(ctx, proxy.lastRequest, 3*time.Second, 60*time.Second)
	stopRSS := sampleRSS(fn.PID())

	logf("karpenter: deleting the %d NodeClaims of the %d nodes carrying %d workflow pods", len(claims), res.Nodes, len(vs))
	t0 := time.Now()
	tr.begin(t0)
	ev.start(t0)
	var mu sync.Mutex
	var last time.Time
	if err := parallel(len(claims), 16, func(i int) error {
		err := c.DeleteNodeClaim(ctx, claims[i])
		mu.Lock()
		last = time.Now()
		mu.Unlock()
		return err
	}); err != nil {
		return res, err
	}
	res.DeleteWindow = last.Sub(t0)
	tr.waitAll(ctx, len(vs), res.Bound, func(elapsed time.Duration, r, l int) {
		logf("karpenter: +%.0fs: %d pods evicted, %d task results completed, %d workflows left Running", elapsed.Seconds(), ev.count(), r, l)
	})
	res.Took = time.Since(t0)
	time.Sleep(2 * time.Second)
	res.RSSMax = stopRSS()
	res.Requests, res.Ingress = proxy.since(t0), ingress.since(t0)
	res.FnLog = parseFnLog(fn.LogPath, t0)
	res.Evicted = ev.copy()

	res.Repaired, res.LeftRunning, res.Phases = tr.results(vs)
	res.Reasons = map[string]int{}
	for _, v := range vs {
		rep, repaired := res.Repaired[v.Workflow]
		if evicted, ok := res.Evicted[v.Pod]; ok && repaired {
			res.AfterEviction = append(res.AfterEviction, rep-evicted)
		}
		if !repaired && !e.repairedOrDone(ctx, ns, v) {
			res.Lost = append(res.Lost, v.Workflow)
		}
		wf, err := e.argo.ArgoprojV1alpha1().Workflows(ns).Get(ctx, v.Workflow, metav1.GetOptions{})
		if err != nil {
			continue
		}
		reason := "(none)"
		if r, ok := repair.Recorded(wf)[v.NodeID]; ok {
			reason = r.Reason
		}
		res.Reasons[reason]++
	}
	logf("karpenter: %d pods evicted, %d/%d repaired, %d/%d left Running after %.1fs; lost %d",
		len(res.Evicted), len(res.Repaired), len(vs), len(res.LeftRunning), len(vs), res.Took.Seconds(), len(res.Lost))
	return res, nil
}

// evictions records when each pod was first seen with a deletionTimestamp after start.
type evictions struct {
	mu sync.Mutex
	t0 time.Time
	at map[string]time.Duration
}

func (v *evictions) start(t0 time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.t0 = t0
}

func (v *evictions) onPod(obj any) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok || u.GetDeletionTimestamp() == nil {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if _, seen := v.at[u.GetName()]; !seen && !v.t0.IsZero() {
		v.at[u.GetName()] = time.Since(v.t0)
	}
}

func (v *evictions) count() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.at)
}

func (v *evictions) copy() map[string]time.Duration {
	v.mu.Lock()
	defer v.mu.Unlock()
	return copyMap(v.at)
}

// reasonsText lists the recorded reasons by count, most first.
func reasonsText(m map[string]int) string {
	type kv struct {
		k string
		n int
	}
	var all []kv
	for k, n := range m {
		all = append(all, kv{k, n})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].n > all[j].n || (all[i].n == all[j].n && all[i].k < all[j].k) })
	out := make([]string, len(all))
	for i, x := range all {
		out[i] = "`" + x.k + "` " + strconv.Itoa(x.n)
	}
	return strings.Join(out, ", ")
}

func writeKarpenterRow(w writer, k *karpenterResult) {
	const target = "every workflow left Running ≤ 20 s after the deletion, 0 lost"
	if k == nil || k.Workflows == 0 {
		w("| 10 | the real Karpenter terminates every NodeClaim at once | %s | %s | |\n", notRun, target)
		return
	}
	ev, rep, left := values(k.Evicted), values(k.Repaired), values(k.LeftRunning)
	w("| 10 | the real Karpenter (%s, KWOK provider) terminates all %d NodeClaims at once, %d workflow pods on their nodes, events through the real Broker, Argo %s | evicted within %s; all task results completed after %s (after its own pod's eviction p99 %s); all left Running after **%s** (%d of %d); **%d lost** | %s | %s |\n",
		localcluster.KarpenterVersion, k.Nodes, k.Workflows, k.Argo, secs(maxDur(ev)), secs(maxDur(rep)), secs(percentile(k.AfterEviction, 99)), secs(maxDur(left)), len(left), k.Workflows, len(k.Lost), target,
		verdict(len(rep) == k.Workflows && len(left) == k.Workflows && maxDur(left) <= 20*time.Second && len(k.Lost) == 0))
}

func writeKarpenter(w writer, k *karpenterResult) {
	w("## 10. Karpenter terminates every node at once\n\n")
	if k == nil || k.Workflows == 0 {
		w("%s.\n\n", notRun)
		return
	}
	ev, rep, left := values(k.Evicted), values(k.Repaired), values(k.LeftRunning)
	w("Its own stack (the scale part's fake Karpenter Nodes must never meet a real Karpenter): the real Karpenter\n")
	w("%s (KWOK provider) and kube-scheduler, Argo %s, the real Broker data plane with the chart's Broker and\n", localcluster.KarpenterVersion, k.Argo)
	w("Triggers, the adapter watching what the chart's sources watch (workflow pods, Events, Nodes, NodeClaims), the\n")
	w("function as its own process (defaults). %d workflows, one step each requesting 100m CPU and 64Mi, selecting\n", k.Workflows)
	w("the NodePool `%s`: the scheduler found them Unschedulable and Karpenter launched **%d nodes** for them\n", localcluster.KarpenterNodePool, k.Nodes)
	w("(set-up %s, stack %s, Broker %s). Each pod takes %s to stop once evicted, as a kubelet would. Then\n", secs(k.SetupTook), secs(k.StackStart), secs(k.BrokerReady), secs(karpenterStop))
	w("every NodeClaim was deleted at once (%s from the first request to the last acceptance): Karpenter's forceful\n", secs(k.DeleteWindow))
	w("path, drain through the Eviction API, then the instance terminated.\n\n")
	w("| from the first NodeClaim delete | p50 | p90 | all |\n|---|---|---|---|\n")
	w("| pod evicted by Karpenter (deletionTimestamp set) | %s | %s | %s (%d of %d) |\n", secs(percentile(ev, 50)), secs(percentile(ev, 90)), secs(maxDur(ev)), len(ev), k.Workflows)
	w("| task result completed by the function | %s | %s | %s (%d of %d) |\n", secs(percentile(rep, 50)), secs(percentile(rep, 90)), secs(maxDur(rep)), len(rep), k.Workflows)
	w("| workflow left Running | %s | %s | %s (%d of %d) |\n\n", secs(percentile(left, 50)), secs(percentile(left, 90)), secs(maxDur(left)), len(left), k.Workflows)
	w("Task result completed after its own pod's eviction: p50 %s, p99 %s, max %s. Recorded reasons: %s.\n",
		secs(percentile(k.AfterEviction, 50)), secs(percentile(k.AfterEviction, 99)), secs(maxDur(k.AfterEviction)), reasonsText(k.Reasons))
	byType, byStatus := map[string]int{}, map[int]int{}
	for _, q := range k.Requests {
		byType[q.Type]++
		byStatus[q.Status]++
	}
	inStatus := map[int]int{}
	for _, q := range k.Ingress {
		inStatus[q.Status]++
	}
	_, p99, mx := durs(tookOf(k.Ingress))
	w("Workflow phases at the end: %s. Lost repairs: **%d**. Deliveries to the function: %d, by type %v, answers %v;\n", phasesText(k.Phases), len(k.Lost), len(k.Requests), byType, byStatus)
	w("the adapter's posts to the ingress: %d, answers %v, held p99 %s (max %s); dead letters %d. The function's log:\n", len(k.Ingress), inStatus, ms(p99), ms(mx), countDeadLetters(k.Requests))
	w("%d \"repaired\", %d \"lost a race\", \"event failed\" %v. Function RSS at most %s.\n\n", k.FnLog.Repaired, k.FnLog.LostRace, k.FnLog.Failed, mb(k.RSSMax))
}
