// Package sweepcmd is the `argo-disruption-handler sweep` command, also the kubectl plugin's
// (`kubectl argo-disruption-handler sweep`): the sweep the PingSource runs, from a terminal, over
// the whole cluster or some namespaces, with the settings the function is deployed with, printing
// every stuck workflow and the ladder step it needs. It reads by default: every planned write is
// sent as a server-side dry run, which the API server validates (RBAC, admission, conflicts) and
// which changes nothing; only --repair writes. docs/audit.md is its manual.
package sweepcmd

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"go.uber.org/zap"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
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
	ExitError = 2 // bad flags, no settings, or the scan could not complete
)

// DefaultRequestTimeout bounds each API request when --request-timeout does not.
const DefaultRequestTimeout = 30 * time.Second

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

// Run runs `prog sweep args…`: it parses args, reads the deployed settings, scans, prints to
// stdout (progress, the settings' source and errors to stderr) and returns the exit status. prog
// is how the user called the tool ("argo-disruption-handler", or "kubectl argo-disruption-handler"
// for the plugin), for the help text.
func Run(ctx context.Context, prog string, args []string, stdout, stderr io.Writer) int {
	return run(ctx, prog, args, stdout, stderr, onCluster)
}

// deps reach the cluster; tests replace them with a fake API.
type deps struct {
	// kube reads the settings ConfigMap.
	kube func(*rest.Config) (kubernetes.Interface, error)
	// sweeper builds the function's sweep from the settings, over the cluster of rc.
	sweeper func(cfg *config.Config, rc *rest.Config) (*sweep.Sweeper, error)
}

// onCluster builds the clients as the function does (internal/wiring), from the REST
// configuration kubectl's flags resolved.
var onCluster = deps{
	kube: func(rc *rest.Config) (kubernetes.Interface, error) { return kubernetes.NewForConfig(rc) },
	sweeper: func(cfg *config.Config, rc *rest.Config) (*sweep.Sweeper, error) {
		p, err := wiring.Build(cfg, wiring.Options{RESTConfig: rc, UserAgent: rc.UserAgent, RequestTimeout: rc.Timeout})
		if err != nil {
			return nil, err
		}
		return p.Sweeper, nil
	},
}

func run(ctx context.Context, prog string, args []string, stdout, stderr io.Writer, d deps) int {
	f, code, ok := parse(prog, args, stdout, stderr)
	if !ok {
		return code
	}
	sw, err := build(ctx, f, d, stderr)
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

// build makes the function's sweep, through the same wiring as the function, from the deployed
// settings with the command line's over them; f.namespaces is filled from the kubeconfig when
// empty.
func build(ctx context.Context, f *flags, d deps, stderr io.Writer) (*sweep.Sweeper, error) {
	rc, err := f.cluster.ToRESTConfig()
	if err != nil {
		return nil, fmt.Errorf("loading the cluster configuration: %w", err)
	}
	rc = rest.CopyConfig(rc)
	if rc.Timeout <= 0 {
		rc.Timeout = DefaultRequestTimeout
	}
	rc.UserAgent = argoworkflow.Component + "-sweep"
	cfg, from, err := settings(ctx, f, d, rc)
	if err != nil {
		return nil, err
	}
	if f.graceSet {
		cfg.SweepGrace = f.grace
		if err := cfg.Validate(); err != nil {
			return nil, fmt.Errorf("--grace %s: %w", f.grace, err)
		}
	}
	fmt.Fprintf(stderr, "sweep: settings from %s: %s\n", from, describe(cfg, f.graceSet))
	if cfg.DryRun && f.repair {
		fmt.Fprintln(stderr, "sweep: the deployed function runs with ADH_DRY_RUN=true; --repair writes all the same")
	}
	cfg.DryRun = f.dryRun
	// Notifications are the function's report, sent where the cluster reaches (the Broker, a
	// sink inside it); this command's report is its output.
	cfg.NotificationSink = ""
	if !f.all && len(f.namespaces) == 0 {
		ns, _, err := f.cluster.ToRawKubeConfigLoader().Namespace()
		if err != nil {
			return nil, fmt.Errorf("reading the kubeconfig context's namespace: %w", err)
		}
		f.namespaces = stringList{ns}
	}
	scope := config.Scope{Namespaces: cfg.Namespaces, Excluded: cfg.ExcludedNamespaces}
	for _, ns := range f.namespaces {
		if !scope.NamespaceAllowed(ns) {
			fmt.Fprintf(stderr, "sweep: namespace %s is outside the deployed scope (ADH_NAMESPACES %q, ADH_EXCLUDED_NAMESPACES %q): not scanned\n",
				ns, strings.Join(cfg.Namespaces, ","), strings.Join(cfg.ExcludedNamespaces, ","))
		}
	}
	return d.sweeper(cfg, rc)
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
