//go:build e2e

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"

	"function/internal/argoworkflow"
	"function/internal/localcluster"
	"function/internal/localcluster/cesink"
	"function/internal/localcluster/scenario"
	"function/internal/manifests"
)

// proxied is one delivery attempt the adapter made, as the counting proxy saw it.
type proxied struct {
	Start   time.Time
	Took    time.Duration
	Type    string
	ID      string
	Subject string
	Status  int
	// DeadLetter marks a dead letter (the Broker adds knativeerrorcode when it gives up).
	DeadLetter bool
}

// countingProxy sits between the ApiServerSource adapter and the function process and records
// every delivery attempt (the adapter retries 503s itself: each attempt is one request).
type countingProxy struct {
	rp   *httputil.ReverseProxy
	mu   sync.Mutex
	reqs []proxied
}

func newCountingProxy(target string) (*countingProxy, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, err
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: time.Minute}
	return &countingProxy{rp: rp}, nil
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(s int) { w.status = s; w.ResponseWriter.WriteHeader(s) }

func (p *countingProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	p.rp.ServeHTTP(sw, r)
	rec := proxied{Start: start, Took: time.Since(start), Type: r.Header.Get("Ce-Type"), ID: r.Header.Get("Ce-Id"),
		Subject: r.Header.Get("Ce-Subject"), Status: sw.status, DeadLetter: r.Header.Get("Ce-Knativeerrorcode") != ""}
	p.mu.Lock()
	p.reqs = append(p.reqs, rec)
	p.mu.Unlock()
}

func (p *countingProxy) since(t time.Time) []proxied {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []proxied
	for _, r := range p.reqs {
		if !r.Start.Before(t) {
			out = append(out, r)
		}
	}
	return out
}

func (p *countingProxy) lastRequest() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.reqs) == 0 {
		return time.Time{}
	}
	return p.reqs[len(p.reqs)-1].Start
}

type burstResult struct {
	Label string
	// Via is the delivery path: "" the adapter posts to the function, viaBroker through the
	// Broker data plane.
	Via          string
	ArgoEnv      map[string]string // the controller's environment during this burst
	Namespace    string
	Workflows    int
	FnEnv        map[string]string
	SetupTook    time.Duration
	DeleteWindow time.Duration // first delete sent → last delete accepted
	DeleteErrors int
	Bound        time.Duration
	// Per workflow, from the first deletion: task result completed by the function, workflow
	// phase left Running.
	Repaired    map[string]time.Duration
	LeftRunning map[string]time.Duration
	Phases      map[string]int
	Lost        []string // workflows whose task result never got completed
	// Recreated are workflows whose pod the controller re-created under the same name (their
	// node was still Pending in its status): the step re-runs, the function rightly leaves it.
	Recreated []string
	// WatchersClosed is how many watches the API server closed for unresponsiveness meanwhile
	// (apiserver_terminated_watchers_total): a closed watch re-lists, and deletions in the gap
	// produce no event.
	WatchersClosed int
	Requests       []proxied
	// Ingress are the adapter's posts to the Broker ingress (via the Broker only): each is held
	// until the channel has delivered, retries included.
	Ingress []proxied
	// BrokerReady is how long the Broker data plane took to start (0 when already running).
	BrokerReady time.Duration
	FnLog       fnLogStats
	AdapterFail int
	RSSBefore   memory
	RSSMax      int64
	End         memory
	Took        time.Duration
}

// fnLogStats counts the function's own log lines written during the burst.
type fnLogStats struct {
	Repaired, LostRace int
	Failed             map[int]int // "event failed" by status
	Refused            map[int]int // "event refused" by status
}

func parseFnLog(path string, from time.Time) fnLogStats {
	st := fnLogStats{Failed: map[int]int{}, Refused: map[int]int{}}
	f, err := os.Open(path)
	if err != nil {
		return st
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var rec struct {
			Timestamp string `json:"timestamp"`
			Msg       string `json:"msg"`
			Status    int    `json:"status"`
		}
		if json.Unmarshal(sc.Bytes(), &rec) != nil {
			continue
		}
		ts, err := time.Parse("2006-01-02T15:04:05.000Z0700", rec.Timestamp)
		if err != nil || ts.Before(from.Truncate(time.Millisecond)) {
			continue
		}
		switch {
		case rec.Msg == "repaired":
			st.Repaired++
		case strings.HasPrefix(rec.Msg, "lost a race"):
			st.LostRace++
		case strings.HasPrefix(rec.Msg, "event failed"):
			st.Failed[rec.Status]++
		case strings.HasPrefix(rec.Msg, "event refused"):
			st.Refused[rec.Status]++
		}
	}
	return st
}

// countFrom counts the lines containing s in path after byte offset off.
func countFrom(path string, off int64, s string) int {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return 0
	}
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		if strings.Contains(sc.Text(), s) {
			n++
		}
	}
	return n
}

func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

// tracker records, from informers, when each workflow left Running and when each task result
// was completed by the function.
type tracker struct {
	mu          sync.Mutex
	t0          time.Time
	started     bool
	repaired    map[string]time.Duration // by workflow
	leftRunning map[string]time.Duration
	phase       map[string]string
}

// track starts a tracker on the workflows and task results of ns, returning once both are
// listed, and the function that stops it.
func (e *env) track(ns string) (*tracker, func()) {
	tr := &tracker{repaired: map[string]time.Duration{}, leftRunning: map[string]time.Duration{}, phase: map[string]string{}}
	stop := make(chan struct{})
	<-e.follow(ns, localcluster.WorkflowGVR, tr.onWorkflow, stop)
	<-e.follow(ns, localcluster.WorkflowTaskResultGVR, tr.onTaskResult, stop)
	return tr, func() { close(stop) }
}

func (t *tracker) onWorkflow(obj any) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return
	}
	phase, _, _ := unstructured.NestedString(u.Object, "status", "phase")
	t.mu.Lock()
	defer t.mu.Unlock()
	t.phase[u.GetName()] = phase
	if !t.started {
		return
	}
	if _, seen := t.leftRunning[u.GetName()]; !seen && phase != "" && phase != "Running" && phase != "Pending" {
		t.leftRunning[u.GetName()] = time.Since(t.t0)
	}
}

func (t *tracker) onTaskResult(obj any) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return
	}
	if !completedByUs(u.GetLabels(), u.GetAnnotations()) {
		return
	}
	wf := u.GetLabels()[argoworkflow.LabelWorkflow]
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, seen := t.repaired[wf]; !seen && t.started {
		t.repaired[wf] = time.Since(t.t0)
	}
}

func (t *tracker) counts() (int, int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.repaired), len(t.leftRunning)
}

// begin starts the clock: what happens from t0 on is recorded, from t0.
func (t *tracker) begin(t0 time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.t0, t.started = t0, true
}

// waitAll waits until n task results are completed and n workflows left Running, or bound from
// the start, calling progress every 10 s (nil: none).
func (t *tracker) waitAll(ctx context.Context, n int, bound time.Duration, progress func(elapsed time.Duration, repaired, left int)) {
	lastLog := time.Now()
	for time.Since(t.t0) < bound && ctx.Err() == nil {
		r, l := t.counts()
		if r >= n && l >= n {
			return
		}
		if progress != nil && time.Since(lastLog) > 10*time.Second {
			progress(time.Since(t.t0), r, l)
			lastLog = time.Now()
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// results are copies of what was recorded, and the last phase of each victim's workflow.
func (t *tracker) results(vs []victim) (repaired, leftRunning map[string]time.Duration, phases map[string]int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	phases = map[string]int{}
	for _, v := range vs {
		phases[t.phase[v.Workflow]]++
	}
	return copyMap(t.repaired), copyMap(t.leftRunning), phases
}

// runBurst: n workflows with one running pod each; the function runs as its own process (the
// binary), fed by the real adapter through the counting proxy; every pod is force-deleted at
// once; the bench follows the task results and the workflows until all moved or the bound.
func runBurst(ctx context.Context, e *env, bin, ns string, n int, bc burstConfig, bound time.Duration) (*burstResult, *scenario.Function, error) {
	fnEnv := bc.FnEnv
	res := &burstResult{Namespace: ns, Workflows: n, FnEnv: fnEnv, Bound: bound, Via: bc.Via}
	if err := e.c.EnsureNamespace(ctx, ns); err != nil {
		return nil, nil, err
	}
	env := map[string]string{"ADH_NAMESPACES": ns, "ADH_LOG_LEVEL": "info"}
	for k, v := range fnEnv {
		env[k] = v
	}
	fn, err := scenario.ExecFunction(bin, e.c.Kubeconfig(), filepath.Join(e.c.LogDir(), "function-"+ns+".log"), env)
	if err != nil {
		return nil, nil, err
	}
	if _, _, err := fn.WaitReady(ctx, 20*time.Second, time.Millisecond); err != nil {
		return nil, fn, err
	}
	proxy, err := newCountingProxy(fn.URL)
	if err != nil {
		return nil, fn, err
	}
	proxyURL, stopProxy, err := cesink.Serve(proxy)
	if err != nil {
		return nil, fn, err
	}
	defer stopProxy()
	sink := proxyURL
	var ingress *countingProxy
	if bc.Via == viaBroker {
		var stopIngress func()
		starts := e.broker == nil
		sink, ingress, stopIngress, err = e.throughBroker(ctx, proxy)
		if err != nil {
			return nil, fn, err
		}
		defer stopIngress()
		if starts {
			res.BrokerReady = e.broker.Ready
		}
	}
	if err := e.c.StartAdapter(sink, []string{ns}, argoworkflow.LabelWorkflow); err != nil {
		return nil, fn, err
	}
	vs, took, err := e.prepare(ctx, ns, "burst", n)
	if err != nil {
		return nil, fn, err
	}
	res.SetupTook = took

	tr, stopTracking := e.track(ns)
	defer stopTracking()

	waitGrace(ctx, vs)
	// The adapter delivers one event at a time: let the set-up's add/update events drain first.
	waitQuiet(ctx, proxy.lastRequest, 3*time.Second, 60*time.Second)
	res.RSSBefore, _ = readMemory(fn.PID())
	adapterLog := filepath.Join(e.c.LogDir(), "adapter.log")
	adapterOff := fileSize(adapterLog)

	stopRSS := sampleRSS(fn.PID())

	closedBefore := e.terminatedWatchers(ctx)
	e.logf("burst: deleting %d pods at once", n)
	t0 := time.Now()
	tr.begin(t0)
	var mu sync.Mutex
	var last time.Time
	_ = parallel(len(vs), 64, func(i int) error {
		at, err := e.deletePod(ctx, ns, vs[i].Pod)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			res.DeleteErrors++
			return err
		}
		if at.After(last) {
			last = at
		}
		return nil
	})
	res.DeleteWindow = last.Sub(t0)
	e.logf("burst: %d pods deleted in %.2fs", n, res.DeleteWindow.Seconds())

	tr.waitAll(ctx, n, bound, func(elapsed time.Duration, r, l int) {
		e.logf("burst: +%.0fs: %d task results completed, %d workflows left Running", elapsed.Seconds(), r, l)
	})
	res.Took = time.Since(t0)
	// Deliveries still in flight (retries) are counted up to here.
	time.Sleep(2 * time.Second)
	res.RSSMax = stopRSS()
	res.End, _ = readMemory(fn.PID())
	res.Requests = proxy.since(t0)
	if ingress != nil {
		res.Ingress = ingress.since(t0)
	}
	res.FnLog = parseFnLog(fn.LogPath, t0)
	res.AdapterFail = countFrom(adapterLog, adapterOff, "failed to send cloudevent")

	res.Repaired, res.LeftRunning, res.Phases = tr.results(vs)
	for _, v := range vs {
		if _, ok := res.Repaired[v.Workflow]; ok || e.repairedOrDone(ctx, ns, v) {
			continue
		}
		if e.recreated(ctx, ns, v) {
			res.Recreated = append(res.Recreated, v.Workflow)
		} else {
			res.Lost = append(res.Lost, v.Workflow)
		}
	}
	res.WatchersClosed = e.terminatedWatchers(ctx) - closedBefore
	e.logf("burst: %d/%d repaired, %d/%d left Running after %.1fs; lost %d", len(res.Repaired), n, len(res.LeftRunning), n, res.Took.Seconds(), len(res.Lost))
	return res, fn, nil
}

// viaBroker is the burst configuration field via:broker: the adapter posts to the Broker
// ingress and the function is the Triggers' subscriber.
const viaBroker = "broker"

// brokerSubscriber is the address the Broker's Triggers and dead-letter sink resolve to: it hands
// each delivery to the current burst's counting proxy. One Broker serves every burst because the
// InMemoryChannel dispatcher's ports are fixed.
type brokerSubscriber struct {
	mu     sync.Mutex
	target http.Handler
}

func (s *brokerSubscriber) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	t := s.target
	s.mu.Unlock()
	if t == nil {
		http.Error(w, "bench: no burst is running", http.StatusServiceUnavailable)
		return
	}
	t.ServeHTTP(w, r)
}

// throughBroker makes the Broker data plane deliver to fn (starting it with the chart's Broker
// and Triggers on first use) and returns the adapter's sink: a counting proxy in front of the
// ingress, which records how long each post is held.
func (e *env) throughBroker(ctx context.Context, fn http.Handler) (string, *countingProxy, func(), error) {
	if e.broker == nil {
		sub := &brokerSubscriber{}
		// Served until the bench exits, as the Broker is.
		subURL, _, err := cesink.Serve(sub)
		if err != nil {
			return "", nil, nil, err
		}
		broker, triggers, err := manifests.Broker()
		if err != nil {
			return "", nil, nil, err
		}
		b, err := e.c.StartBroker(ctx, localcluster.BrokerOptions{Broker: broker, Triggers: triggers, Addresses: destinations(broker, triggers, subURL)})
		if err != nil {
			return "", nil, nil, err
		}
		e.broker, e.brokerSub = b, sub
		e.logf("broker %s/%s: data plane up, canary delivered in %.2fs", b.Namespace, b.Name, b.Ready.Seconds())
	}
	e.brokerSub.mu.Lock()
	e.brokerSub.target = fn
	e.brokerSub.mu.Unlock()
	u, err := url.Parse(e.broker.IngressURL)
	if err != nil {
		return "", nil, nil, err
	}
	ingress, err := newCountingProxy(u.Scheme + "://" + u.Host)
	if err != nil {
		return "", nil, nil, err
	}
	// The ingress holds a post through every retry of the channel (6 with the shipped backoff:
	// over a minute), longer than the reverse proxy's default wait.
	ingress.rp.Transport = &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: time.Minute, ResponseHeaderTimeout: 5 * time.Minute}
	base, stop, err := cesink.Serve(ingress)
	if err != nil {
		return "", nil, nil, err
	}
	return strings.TrimSuffix(base, "/") + u.Path, ingress, stop, nil
}

// destinations maps every destination ref the Broker and its Triggers name (subscribers, the
// dead-letter sink) to url: all of them are the function.
func destinations(broker *unstructured.Unstructured, triggers []*unstructured.Unstructured, url string) map[string]string {
	out := map[string]string{}
	if name, ok, _ := unstructured.NestedString(broker.Object, "spec", "delivery", "deadLetterSink", "ref", "name"); ok {
		out[name] = url
	}
	for _, t := range triggers {
		if name, ok, _ := unstructured.NestedString(t.Object, "spec", "subscriber", "ref", "name"); ok {
			out[name] = url
		}
		if name, ok, _ := unstructured.NestedString(t.Object, "spec", "delivery", "deadLetterSink", "ref", "name"); ok {
			out[name] = url
		}
	}
	return out
}

// terminatedWatchers is the API server's apiserver_terminated_watchers_total, all resources.
func (e *env) terminatedWatchers(ctx context.Context) int {
	raw, err := e.kube.Discovery().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return 0
	}
	n := 0
	for _, l := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(l, "apiserver_terminated_watchers_total{") {
			f := strings.Fields(l)
			var v float64
			if _, err := fmt.Sscan(f[len(f)-1], &v); err == nil {
				n += int(v)
			}
		}
	}
	return n
}

// follow lists then watches one resource of ns until stop, calling on for every object listed,
// added or modified; a closed watch is re-listed. (A hand-written loop: client-go's informers
// would need a go.mod change.)
func (e *env) follow(ns string, gvr schema.GroupVersionResource, on func(any), stop <-chan struct{}) (synced <-chan struct{}) {
	ri := e.dyn.Resource(gvr).Namespace(ns)
	ready := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-stop; cancel() }()
	go func() {
		first := true
		for ctx.Err() == nil {
			list, err := ri.List(ctx, metav1.ListOptions{})
			if err != nil {
				time.Sleep(200 * time.Millisecond)
				continue
			}
			for i := range list.Items {
				on(&list.Items[i])
			}
			if first {
				close(ready)
				first = false
			}
			w, err := ri.Watch(ctx, metav1.ListOptions{ResourceVersion: list.GetResourceVersion(), AllowWatchBookmarks: true})
			if err != nil {
				continue
			}
			for ev := range w.ResultChan() {
				if ev.Type == watch.Added || ev.Type == watch.Modified {
					on(ev.Object)
				}
			}
			w.Stop()
		}
	}()
	return ready
}
