package sweep

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	argoclient "github.com/argoproj/argo-workflows/v3/pkg/client/clientset/versioned"

	"function/config"
	"function/internal/argoworkflow"
	"function/internal/repair"
)

// Sweeper scans Running workflows and repairs what it finds with the Repairer (whose DryRun
// setting decides whether anything changes). It holds no state between runs.
type Sweeper struct {
	Kube     kubernetes.Interface
	Argo     argoclient.Interface
	Repairer *repair.Repairer
	Scope    config.Scope
	// Grace is how long a finished node may keep its task result incomplete (and a pod stay
	// Terminating) before it is a candidate.
	Grace time.Duration
	// PageSize bounds one LIST of workflows.
	PageSize int64
	Now      func() time.Time
}

// Options of one run.
type Options struct {
	// Namespaces to scan ("" = every namespace the scope allows). Empty: the scope's list, or all.
	Namespaces []string
	// From resumes an earlier run (Report.Next); zero starts at the beginning.
	From Cursor
	// Budget stops the run once spent, checked after each workflow once one was swept (0: no
	// budget); Report.Next then says where to resume.
	Budget time.Duration
	// Progress, when set, is told after each page.
	Progress func(p Progress)
	// Checkpoint, when set, stores where the run is, so that a run killed mid-page (an OOM, the
	// request's deadline) resumes after the last workflow it finished: at the start (with the
	// stall count raised), then after a finished workflow at most every CheckpointEvery, and at
	// the end of each page. An error is logged by the caller; the run goes on.
	Checkpoint      func(Cursor) error
	CheckpointEvery time.Duration
	// Clock is the budget's clock (nil: the wall clock).
	Clock func() time.Time
}

// Progress is reported after each page.
type Progress struct {
	Namespace string
	Scanned   int
	Found     int
}

// Cursor is where a run stopped: the namespace being listed (index into the run's namespaces),
// the API server's continue token of the page in progress within it, and the last workflow of
// that page already swept ("namespace/name"). It is small and JSON-friendly, so it can be kept
// on the cluster between pings. Stalls counts the runs that started here and did not finish a
// workflow: at MaxStalls the next workflow is skipped, so one that always overruns the budget
// or kills the process cannot stop the sweep for good.
type Cursor struct {
	Namespace int    `json:"namespace"`
	Continue  string `json:"continue,omitempty"`
	After     string `json:"after,omitempty"`
	Stalls    int    `json:"stalls,omitempty"`
}

// MaxStalls is how many runs may start at the same place without finishing a workflow before
// the workflow there is skipped.
const MaxStalls = 2

// Zero reports whether the cursor is the start.
func (c Cursor) Zero() bool { return c.Namespace == 0 && c.Continue == "" && c.After == "" }

// Finding is one candidate and what the ladder made of it.
type Finding struct {
	Candidate
	// RunningFor is the workflow's age in Running.
	RunningFor time.Duration
	Result     repair.Result
	Err        error
}

// Stuck reports whether the finding needed (or needs, in dry run) a write.
func (f Finding) Stuck() bool { return f.Err == nil && !f.Result.Plan.Empty() }

// Report is the outcome of one run.
type Report struct {
	Started  time.Time
	Duration time.Duration
	// Workflows is how many Running workflows were scanned.
	Workflows int
	Findings  []Finding
	// Next is where to resume; zero when the scan reached the end.
	Next Cursor
	// Errors are the failures of single workflows (the scan went on) and the listing error that
	// stopped it, if any.
	Errors []error
	// Skipped are the workflows ("namespace/name") passed over because runs kept stopping on them.
	Skipped []string
}

// Stuck is the number of findings that needed a write.
func (r Report) Stuck() int {
	n := 0
	for _, f := range r.Findings {
		if f.Stuck() {
			n++
		}
	}
	return n
}

const defaultPageSize = 100

// A page of Workflows is sized by what its workflows weigh: pageBytes of their serialized size
// (decoded they take a few times more), estimated from the page before. A run's first page is
// firstPage long, since nothing is known yet of the workflows' size.
const (
	pageBytes = 8 << 20
	firstPage = 10
)

// One LIST of pods serves a batch of a page's workflows (a set-based label selector): at most
// podBatchWorkflows of them, whose Pod nodes add up to at most podBatchPods.
const (
	podBatchWorkflows = 50
	podBatchPods      = 2000
)

// Run scans from opts.From until the end or the budget. A listing error ends the run (the
// cursor stays where it was, so a retry resumes there); a failed repair is recorded and the scan
// goes on.
func (s *Sweeper) Run(ctx context.Context, opts Options) (rep Report) {
	// The budget runs on its own clock (the wall clock); s.Now only dates the decisions.
	clock := opts.Clock
	if clock == nil {
		clock = time.Now
	}
	rep.Started = clock()
	defer func() { rep.Duration = clock().Sub(rep.Started) }()
	r := s.start(opts, clock, &rep)
	for r.cur.Namespace < len(r.namespaces) {
		if !r.page(ctx) {
			break
		}
	}
	return rep
}

// sweepRun is one Run's state: where it is, what it found so far, and its budget.
type sweepRun struct {
	s          *Sweeper
	opts       Options
	clock      func() time.Time
	rep        *Report
	namespaces []string
	cur        Cursor
	ck         checkpointer
	// swept counts the workflows finished by this run; skipNext passes over the first one, on
	// which earlier runs kept stopping.
	swept    int
	skipNext bool
	// limit is the next page's size (0: the first page); items the page being swept, pods the
	// pods listed for a batch of its workflows ("namespace/name" → pods; present once listed).
	limit int64
	items []wfv1.Workflow
	pods  map[string][]corev1.Pod
}

func (s *Sweeper) start(opts Options, clock func() time.Time, rep *Report) *sweepRun {
	r := &sweepRun{s: s, opts: opts, clock: clock, rep: rep, namespaces: s.namespaces(opts.Namespaces), cur: opts.From}
	if r.cur.Namespace >= len(r.namespaces) {
		r.cur = Cursor{}
	}
	r.ck = checkpointer{save: opts.Checkpoint, every: opts.CheckpointEvery, clock: clock, rep: rep}
	r.skipNext = r.cur.Stalls >= MaxStalls
	// The count is raised until a workflow finishes, and stored before any work: a run that is
	// killed, or returns at its deadline, before finishing one leaves it raised.
	r.cur.Stalls++
	r.ck.force(r.cur)
	return r
}

// page sweeps the next page of Running workflows; false when the run ends within it.
func (r *sweepRun) page(ctx context.Context) bool {
	ns := r.namespaces[r.cur.Namespace]
	list, err := r.s.listRunning(ctx, ns, r.cur.Continue, r.nextLimit())
	if err != nil {
		r.rep.Errors = append(r.rep.Errors, err)
		r.rep.Next = r.cur
		if r.swept == 0 {
			r.rep.Next.Stalls = r.opts.From.Stalls // a failed listing is no workflow's fault
		}
		return false
	}
	r.sizeFrom(list.Items)
	r.items, r.pods = list.Items, nil
	for i := range r.items {
		if !r.visit(ctx, i) {
			return false
		}
	}
	if r.opts.Progress != nil {
		r.opts.Progress(Progress{Namespace: ns, Scanned: r.rep.Workflows, Found: len(r.rep.Findings)})
	}
	if list.Continue != "" {
		r.cur = Cursor{Namespace: r.cur.Namespace, Continue: list.Continue}
	} else {
		r.cur = Cursor{Namespace: r.cur.Namespace + 1}
	}
	if r.cur.Namespace < len(r.namespaces) {
		r.ck.force(r.cur)
	}
	return true
}

// nextLimit is the size of the next page: what fits pageBytes by the last page's workflows,
// within PageSize.
func (r *sweepRun) nextLimit() int64 {
	most := r.s.PageSize
	if most <= 0 {
		most = defaultPageSize
	}
	if r.limit == 0 {
		return min(most, firstPage)
	}
	return min(most, r.limit)
}

// sizeFrom sets the next page's size from the weight of this page's workflows.
func (r *sweepRun) sizeFrom(items []wfv1.Workflow) {
	if len(items) == 0 {
		return
	}
	total := 0
	for i := range items {
		total += items[i].Size()
	}
	r.limit = max(1, int64(pageBytes/max(1, total/len(items))))
}

// visit sweeps one workflow of a page; false when the run ends before finishing it (the budget
// is spent, or the request's deadline passed).
func (r *sweepRun) visit(ctx context.Context, i int) bool {
	wf := &r.items[i]
	key := wf.Namespace + "/" + wf.Name
	switch {
	case r.cur.After != "" && key <= r.cur.After:
		return true // swept by an earlier run (lists come in key order)
	case r.opts.Budget > 0 && r.swept > 0 && r.clock().Sub(r.rep.Started) > r.opts.Budget:
		r.rep.Next = r.cur
		r.ck.force(r.cur)
		return false
	case r.skipNext:
		r.skipNext = false
		r.rep.Skipped = append(r.rep.Skipped, key)
		r.cur.After, r.cur.Stalls = key, 0
		return true
	}
	if r.s.Scope.Check(wf.Namespace, wf.Labels) == nil {
		r.rep.Workflows++
		found, err := r.sweepWorkflow(ctx, i)
		r.rep.Findings = append(r.rep.Findings, found...)
		if err != nil {
			r.rep.Errors = append(r.rep.Errors, err)
		}
		if ctx.Err() != nil {
			// Cut short: this workflow is not finished; the next run starts with it.
			r.rep.Next = r.cur
			return false
		}
	}
	r.swept++
	r.cur.After, r.cur.Stalls = key, 0
	r.ck.maybe(r.cur)
	return true
}

// checkpointer stores the cursor through Options.Checkpoint, at most every `every` unless forced.
type checkpointer struct {
	save  func(Cursor) error
	every time.Duration
	clock func() time.Time
	last  time.Time
	rep   *Report
}

func (c *checkpointer) maybe(cur Cursor) {
	if c.save != nil && c.clock().Sub(c.last) >= c.every {
		c.force(cur)
	}
}

func (c *checkpointer) force(cur Cursor) {
	if c.save == nil {
		return
	}
	c.last = c.clock()
	if err := c.save(cur); err != nil {
		c.rep.Errors = append(c.rep.Errors, fmt.Errorf("storing the sweep's cursor: %w", err))
	}
}

// listRunning lists one page of Running workflows of our controller. A continue token the API
// server has compacted away (410) is replaced by the one it offers for an inconsistent
// continuation, else the namespace starts over: a sweep never stalls on an old cursor.
func (s *Sweeper) listRunning(ctx context.Context, ns, cont string, limit int64) (*wfv1.WorkflowList, error) {
	sel := argoworkflow.LabelPhase + "=" + string(wfv1.WorkflowRunning)
	if s.Scope.ControllerInstanceID != "" {
		sel += "," + argoworkflow.LabelInstanceID + "=" + s.Scope.ControllerInstanceID
	} else {
		sel += ",!" + argoworkflow.LabelInstanceID
	}
	opts := metav1.ListOptions{LabelSelector: sel, Limit: limit, Continue: cont}
	list, err := s.Argo.ArgoprojV1alpha1().Workflows(ns).List(ctx, opts)
	if apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
		opts.Continue = ""
		var se apierrors.APIStatus
		if errors.As(err, &se) {
			opts.Continue = se.Status().ListMeta.Continue
		}
		list, err = s.Argo.ArgoprojV1alpha1().Workflows(ns).List(ctx, opts)
	}
	if err != nil {
		where := "all namespaces"
		if ns != "" {
			where = "namespace " + ns
		}
		return nil, fmt.Errorf("listing Running workflows in %s: %w", where, err)
	}
	return list, nil
}

// sweepWorkflow finds the candidates of the page's workflow i and repairs each. Its pods are
// read only when it can hold a candidate (NeedsPods), in one LIST with the next workflows of the
// page that need theirs.
func (r *sweepRun) sweepWorkflow(ctx context.Context, i int) ([]Finding, error) {
	wf := &r.items[i]
	var incomplete []string
	var err error
	if _, storage, _ := argoworkflow.Nodes(wf); storage == argoworkflow.Offloaded && len(wf.Status.TaskResultsCompletionStatus) == 0 {
		// Argo 3.7.1+ keeps the gate on the nodes, which are in the database: the incomplete
		// task results name the nodes instead.
		if incomplete, err = r.s.incompleteTaskResults(ctx, wf); err != nil {
			return nil, err
		}
	}
	if !NeedsPods(wf, incomplete...) {
		return nil, nil
	}
	pods, err := r.podsOf(ctx, i)
	if err != nil {
		return nil, err
	}
	now := r.s.now()
	running := time.Duration(0)
	if !wf.Status.StartedAt.IsZero() {
		running = now.Sub(wf.Status.StartedAt.Time)
	}
	var out []Finding
	var errs []error
	for _, c := range Candidates(wf, pods, now, r.s.Grace, incomplete...) {
		res, err := r.s.Repairer.Repair(ctx, c.Target)
		out = append(out, Finding{Candidate: c, RunningFor: running, Result: res, Err: err})
		if err != nil {
			errs = append(errs, err)
		}
	}
	return out, errors.Join(errs...)
}

// podsOf returns the pods of the page's workflow i, listing them together with those of the next
// workflows of the page (same namespace, in scope) that need theirs.
func (r *sweepRun) podsOf(ctx context.Context, i int) ([]corev1.Pod, error) {
	wf := &r.items[i]
	if pods, listed := r.pods[wf.Namespace+"/"+wf.Name]; listed {
		return pods, nil
	}
	names := r.batchFrom(i)
	pods, err := r.s.listPods(ctx, wf.Namespace, names)
	if err != nil {
		return nil, err
	}
	r.pods = make(map[string][]corev1.Pod, len(names))
	for _, n := range names {
		r.pods[wf.Namespace+"/"+n] = nil
	}
	for _, p := range pods {
		key := p.Namespace + "/" + p.Labels[argoworkflow.LabelWorkflow]
		if _, asked := r.pods[key]; asked {
			r.pods[key] = append(r.pods[key], p)
		}
	}
	return r.pods[wf.Namespace+"/"+wf.Name], nil
}

// batchFrom names workflow i and the next workflows of the page whose pods one LIST should bring.
func (r *sweepRun) batchFrom(i int) []string {
	wf := &r.items[i]
	names, pods := []string{wf.Name}, max(1, podNodes(wf))
	for j := i + 1; j < len(r.items) && len(names) < podBatchWorkflows; j++ {
		o := &r.items[j]
		if o.Namespace != wf.Namespace || r.s.Scope.Check(o.Namespace, o.Labels) != nil || !NeedsPods(o) {
			continue
		}
		n := max(1, podNodes(o))
		if pods+n > podBatchPods {
			break
		}
		names, pods = append(names, o.Name), pods+n
	}
	return names
}

// incompleteTaskResults names the nodes whose task result the workflow's executors left
// incomplete.
func (s *Sweeper) incompleteTaskResults(ctx context.Context, wf *wfv1.Workflow) ([]string, error) {
	sel := argoworkflow.LabelWorkflow + "=" + wf.Name + "," + argoworkflow.LabelReportOutputsCompleted + "=false"
	list, err := s.Argo.ArgoprojV1alpha1().WorkflowTaskResults(wf.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return nil, fmt.Errorf("listing incomplete task results of workflow %s/%s: %w", wf.Namespace, wf.Name, err)
	}
	var ids []string
	for _, tr := range list.Items {
		if ownedBy := repair.WorkflowOwner(tr.OwnerReferences, wf.Name); ownedBy == wf.UID {
			ids = append(ids, tr.Name)
		}
	}
	return ids, nil
}

// podPage bounds one LIST of pods.
const podPage = 500

// listPods lists the pods of the named workflows of one namespace, a page at a time.
func (s *Sweeper) listPods(ctx context.Context, namespace string, workflows []string) ([]corev1.Pod, error) {
	sel := argoworkflow.LabelWorkflow + " in (" + strings.Join(workflows, ",") + ")"
	var out []corev1.Pod
	opts := metav1.ListOptions{LabelSelector: sel, Limit: podPage}
	for {
		pods, err := s.Kube.CoreV1().Pods(namespace).List(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("listing pods of workflows %s/%s: %w", namespace, strings.Join(workflows, ","), err)
		}
		out = append(out, pods.Items...)
		if opts.Continue = pods.Continue; opts.Continue == "" {
			return out, nil
		}
	}
}

// namespaces returns the namespaces to list: the ones asked for, else the scope's, else ""
// (every namespace, in one paginated list; excluded ones are dropped as read).
func (s *Sweeper) namespaces(asked []string) []string {
	var out []string
	for _, ns := range asked {
		if ns == "" || s.Scope.NamespaceAllowed(ns) {
			out = append(out, ns)
		}
	}
	if len(asked) == 0 {
		out = slices.Clone(s.Scope.Namespaces)
	}
	if len(out) == 0 && len(asked) == 0 {
		out = []string{""}
	}
	return out
}

func (s *Sweeper) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}
