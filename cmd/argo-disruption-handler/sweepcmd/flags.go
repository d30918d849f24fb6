// The command line: the command's own flags, and kubectl's cluster flags (k8s.io/cli-runtime),
// so that a kubectl user's habits and kubeconfig work unchanged.

package sweepcmd

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/cli-runtime/pkg/genericclioptions"
)

// flags are the command line of one run.
type flags struct {
	// cluster are kubectl's flags (--kubeconfig, --context, --as, --request-timeout, …).
	cluster    *genericclioptions.ConfigFlags
	namespaces stringList
	all        bool
	dryRun     bool // every run but --repair
	repair     bool
	output     string
	grace      time.Duration
	graceSet   bool
	// settingsNamespace holds the settings ConfigMap; settingsFromEnv reads ADH_* instead.
	settingsNamespace string
	settingsFromEnv   bool
}

// flagSets returns the command's own flags and kubectl's, bound to f.
func flagSets(f *flags) (own, kube *pflag.FlagSet) {
	own = pflag.NewFlagSet("sweep", pflag.ContinueOnError)
	own.VarP(&f.namespaces, "namespace", "n", "namespace to scan; repeat or comma-separate for more (default: the kubeconfig context's, as kubectl)")
	own.BoolVarP(&f.all, "all-namespaces", "A", false, "scan every namespace the deployed scope allows")
	own.BoolVar(&f.repair, "repair", false, "repair what is stuck (default: change nothing, send the planned writes as server-side dry runs)")
	own.BoolVar(&f.dryRun, "dry-run", false, "change nothing (the default; kept for scripts)")
	own.StringVarP(&f.output, "output", "o", "table", "output format: table or json")
	own.DurationVar(&f.grace, "grace", 0, "how long a finished node may keep its task result incomplete (default: the settings' ADH_SWEEP_GRACE; at least 30s)")
	own.StringVar(&f.settingsNamespace, "settings-namespace", DefaultSettingsNamespace, "namespace of the ConfigMap "+SettingsConfigMap+" (the chart's release namespace)")
	own.BoolVar(&f.settingsFromEnv, "settings-from-env", false, "read the settings from the ADH_* environment instead of the ConfigMap")

	// The command's -n takes a list, so kubectl's single-namespace flag is left out; the
	// kubeconfig context's namespace stays the default, read through the same flags.
	f.cluster = genericclioptions.NewConfigFlags(true)
	f.cluster.Namespace = nil
	// Every request is bounded, so that a hung API server ends the run with an error: kubectl's
	// "0: no timeout" does not apply.
	timeout := DefaultRequestTimeout.String()
	f.cluster.Timeout = &timeout
	kube = pflag.NewFlagSet("kubectl", pflag.ContinueOnError)
	f.cluster.AddFlags(kube)
	kube.Lookup("request-timeout").Usage = "how long to wait for one API request (e.g. 10s, 1m); 0 means " + timeout
	return own, kube
}

// parse reads args; ok is false when the run should end with code (help, or bad flags). Help goes
// to stdout, errors to stderr.
func parse(prog string, args []string, stdout, stderr io.Writer) (f *flags, code int, ok bool) {
	f = &flags{}
	own, kube := flagSets(f)
	fs := pflag.NewFlagSet(prog+" sweep", pflag.ContinueOnError)
	fs.AddFlagSet(own)
	fs.AddFlagSet(kube)
	fs.SetOutput(stderr)
	fs.Usage = func() { usage(stdout, prog, own, kube) }
	fail := func(format string, a ...any) (*flags, int, bool) {
		fmt.Fprintf(stderr, "sweep: "+format+"\n", a...)
		fmt.Fprintf(stderr, "See '%s sweep --help'.\n", prog)
		return f, ExitError, false
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return f, ExitClean, false
		}
		return fail("%v", err)
	}
	f.graceSet = fs.Changed("grace")
	switch {
	case fs.NArg() > 0:
		return fail("unexpected argument %q (namespaces go after -n)", fs.Arg(0))
	case f.output != "table" && f.output != "json":
		return fail("-o %q: want table or json", f.output)
	case f.all && len(f.namespaces) > 0:
		return fail("-A and -n are exclusive")
	case f.repair && f.dryRun:
		return fail("--repair and --dry-run are exclusive")
	case f.settingsFromEnv && fs.Changed("settings-namespace"):
		return fail("--settings-from-env and --settings-namespace are exclusive")
	}
	for _, ns := range append([]string{f.settingsNamespace}, f.namespaces...) {
		if msgs := validation.IsDNS1123Label(ns); len(msgs) > 0 {
			return fail("%q is not a namespace name: %s", ns, strings.Join(msgs, "; "))
		}
	}
	f.dryRun = !f.repair
	return f, ExitClean, true
}

func usage(w io.Writer, prog string, own, kube *pflag.FlagSet) {
	fmt.Fprintf(w, `Lists the Running Argo workflows stuck after Kubernetes or Karpenter took a pod away, and the
repair each needs. Changes nothing unless --repair: the planned writes are sent as server-side dry
runs.

The settings are the deployed function's: the ConfigMap %s in
--settings-namespace (the chart's release namespace), or with --settings-from-env the ADH_*
environment. Their scope (ADH_NAMESPACES, ADH_EXCLUDED_NAMESPACES, ADH_INSTANCE_ID) and
ADH_SWEEP_GRACE apply as in the function.

Exit status: 0 nothing stuck, 1 stuck workflows found, 2 error (flags, settings, cluster).

Usage:
  %s sweep [-n NS[,NS…] | -A] [--repair] [-o table|json] [flags]

Flags:
%s
Cluster flags (kubectl's):
%s`, SettingsConfigMap, prog, own.FlagUsages(), kube.FlagUsages())
}

// stringList is a repeatable, comma-separated flag.
type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }

func (s *stringList) Type() string { return "strings" }

func (s *stringList) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*s = append(*s, p)
		}
	}
	return nil
}
