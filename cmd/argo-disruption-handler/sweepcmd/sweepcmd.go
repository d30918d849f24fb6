// Package sweepcmd is the `argo-disruption-handler sweep` command: the sweep the PingSource runs,
// from a terminal, over the whole cluster or some namespaces, printing every stuck workflow and
// the ladder step it needs. It reads by default: every planned write is sent as a server-side dry
// run, which the API server validates (RBAC, admission, conflicts) and which changes nothing; only
// --repair writes.
package sweepcmd

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"go.uber.org/zap"
	"k8s.io/client-go/tools/clientcmd"
	"knative.dev/pkg/logging"

	"function/config"
	"function/internal/argoworkflow"
	"function/internal/sweep"
	"function/internal/wiring"
)

// Exit statuses.
const (
	ExitClean = 0 // nothing stuck
	ExitStuck = 1 // stuck workflows found (planned, or repaired with --repair)
	ExitError = 2 // bad flags, or the scan could not complete
)

// Row is one stuck node, as printed (-o json prints a list of them).
type Row struct {
	Namespace  string   `json:"namespace"`
	Workflow   string   `json:"workflow"`
	RunningFor string   `json:"runningFor"`
	NodeID     string   `json:"nodeID"`
	NodeName   string   `json:"nodeName,omitempty"`
	Pod        string   `json:"pod,omitempty"`
	PodState   string   `json:"podState"`
	Why        string   `json:"why"`
	Steps      []string `json:"steps"`
	Note       string   `json:"note,omitempty"`
	Reason     string   `json:"reason,omitempty"`
	DryRun     bool     `json:"dryRun"`
	Done       bool     `json:"done"`
	Error      string   `json:"error,omitempty"`
}

// flags are the command line of one run.
type flags struct {
	kubeconfig string
	namespaces stringList
	all        bool
	dryRun     bool // every run but --repair
	repair     bool
	output     string
	grace      time.Duration
}

// parse reads args; ok is false when the run should end with code (help, or bad flags).
func parse(args []string, stderr io.Writer) (f flags, code int, ok bool) {
	fs := flag.NewFlagSet("sweep", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, in-cluster, ~/.kube/config)")
	fs.Var(&f.namespaces, "n", "namespace to scan (repeat or comma-separate; default: the kubeconfig context's)")
	fs.Var(&f.namespaces, "namespace", "same as -n")
	fs.BoolVar(&f.all, "A", false, "scan every namespace in scope")
	fs.BoolVar(&f.repair, "repair", false, "repair what is stuck (default: change nothing, send the planned writes as server-side dry runs)")
	fs.BoolVar(&f.dryRun, "dry-run", false, "change nothing (the default; kept for scripts)")
	fs.StringVar(&f.output, "o", "table", "output format: table or json")
	fs.DurationVar(&f.grace, "grace", 0, "how long a finished node may keep its task result incomplete (default: ADH_SWEEP_GRACE)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: argo-disruption-handler sweep [--kubeconfig FILE] [-n NS | -A] [--repair] [-o table|json]")
		fmt.Fprintln(stderr, "Lists Running Argo workflows stuck after a pod was taken away and the repair each needs; --repair does it.")
		fmt.Fprintln(stderr, "Exit status: 0 nothing stuck, 1 stuck workflows found, 2 error.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return f, ExitClean, false
		}
		return f, ExitError, false
	}
	switch {
	case f.output != "table" && f.output != "json":
		fmt.Fprintf(stderr, "sweep: -o %q: want table or json\n", f.output)
		return f, ExitError, false
	case f.all && len(f.namespaces) > 0:
		fmt.Fprintln(stderr, "sweep: -A and -n are exclusive")
		return f, ExitError, false
	case f.repair && f.dryRun:
		fmt.Fprintln(stderr, "sweep: --repair and --dry-run are exclusive")
		return f, ExitError, false
	}
	f.dryRun = !f.repair
	return f, ExitClean, true
}

// Run parses args (after "sweep"), scans, prints to stdout (progress and errors to stderr) and
// returns the exit status.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	f, code, ok := parse(args, stderr)
	if !ok {
		return code
	}
	sw, err := build(&f)
	if err != nil {
		fmt.Fprintln(stderr, "sweep:", err)
		return ExitError
	}
	// The repairs log nothing here: the table is the output.
	ctx = logging.WithLogger(ctx, zap.NewNop().Sugar())
	rep := sw.Run(ctx, sweep.Options{Namespaces: f.namespaces, Progress: progress(stderr, time.Now())})
	rows := Rows(rep)
	if err := print(stdout, f.output, rows); err != nil {
		fmt.Fprintln(stderr, "sweep:", err)
		return ExitError
	}
	verb := "repaired"
	if f.dryRun {
		verb = "would be repaired (dry run: nothing changed)"
	}
	fmt.Fprintf(stderr, "sweep: %d Running workflows scanned in %s; %d stuck nodes %s\n", rep.Workflows, rep.Duration.Round(time.Millisecond), len(rows), verb)
	for _, err := range rep.Errors {
		fmt.Fprintln(stderr, "sweep: error:", err)
	}
	switch {
	case len(rep.Errors) > 0 && len(rows) == 0:
		return ExitError
	case len(rows) > 0:
		return ExitStuck
	}
	return ExitClean
}

// build makes the function's sweep, through the same wiring as the function, with the command
// line's settings over the configuration; f.namespaces is filled from the kubeconfig when empty.
func build(f *flags) (*sweep.Sweeper, error) {
	cfg, err := config.Load()
	if err != nil {
		return nil, err
	}
	if f.grace > 0 {
		cfg.SweepGrace = f.grace
	}
	cfg.DryRun = f.dryRun
	if !f.all && len(f.namespaces) == 0 {
		ns, err := contextNamespace(f.kubeconfig)
		if err != nil {
			return nil, err
		}
		f.namespaces = stringList{ns}
	}
	p, err := wiring.Build(cfg, wiring.Options{Kubeconfig: f.kubeconfig, UserAgent: argoworkflow.Component + "-sweep", RequestTimeout: 30 * time.Second})
	if err != nil {
		return nil, err
	}
	return p.Sweeper, nil
}

// progress prints how far a scan has come, once it has taken more than a second.
func progress(stderr io.Writer, started time.Time) func(sweep.Progress) {
	return func(p sweep.Progress) {
		if time.Since(started) <= time.Second {
			return
		}
		where := p.Namespace
		if where == "" {
			where = "all namespaces"
		}
		fmt.Fprintf(stderr, "sweep: %d Running workflows scanned (%s), %d candidates, %s\n", p.Scanned, where, p.Found, time.Since(started).Round(time.Millisecond))
	}
}

// Rows turns a report into the printed rows: every finding that needed a write, or failed.
func Rows(rep sweep.Report) []Row {
	var rows []Row
	for _, f := range rep.Findings {
		if !f.Stuck() && f.Err == nil {
			continue
		}
		row := Row{
			Namespace: f.Target.Namespace, Workflow: f.Target.Workflow, RunningFor: duration(f.RunningFor),
			NodeID: f.Target.NodeID, NodeName: f.NodeName, Pod: f.Target.PodName, PodState: f.PodState, Why: f.Why,
			Note: f.Result.Plan.Note, Reason: f.Target.Reason, DryRun: f.Result.DryRun,
		}
		for _, a := range f.Result.Plan.Actions {
			row.Steps = append(row.Steps, string(a))
		}
		if f.Result.Plan.Record {
			row.Steps = append(row.Steps, "record")
		}
		row.Done = f.Err == nil && len(f.Result.Done) == len(f.Result.Plan.Actions)
		if f.Err != nil {
			row.Error = f.Err.Error()
		}
		rows = append(rows, row)
	}
	return rows
}

func print(w io.Writer, format string, rows []Row) error {
	if format == "json" {
		if rows == nil {
			rows = []Row{}
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rows)
	}
	if len(rows) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tWORKFLOW\tRUNNING\tNODE\tPOD\tSTEP\tWHY")
	for _, r := range rows {
		node := r.NodeName
		if node == "" {
			node = r.NodeID
		}
		steps := strings.Join(r.Steps, "+")
		if r.Error != "" {
			steps = "error: " + r.Error
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Namespace, r.Workflow, r.RunningFor, node, r.PodState, steps, r.Why)
	}
	return tw.Flush()
}

func duration(d time.Duration) string {
	switch {
	case d <= 0:
		return "-"
	case d < time.Hour:
		return d.Round(time.Second).String()
	default:
		return d.Round(time.Minute).String()
	}
}

// contextNamespace is the kubeconfig context's namespace ("default" when unset), as kubectl uses.
func contextNamespace(kubeconfig string) (string, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = kubeconfig
	ns, _, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).Namespace()
	if err != nil {
		return "", fmt.Errorf("reading the kubeconfig's namespace: %w", err)
	}
	return ns, nil
}

// stringList is a repeatable, comma-separated flag.
type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }

func (s *stringList) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*s = append(*s, p)
		}
	}
	return nil
}
