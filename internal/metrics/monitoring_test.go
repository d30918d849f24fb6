package metrics

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/yaml"
)

// The monitoring pack the chart ships (deploy/chart/monitoring) and its runbooks.
var (
	monitoringDir  = filepath.Join("..", "..", "deploy", "chart", "monitoring")
	monitoringDoc  = filepath.Join("..", "..", "docs", "monitoring.md")
	runbookPrefix  = "https://github.com/argo-disruption-handler/argo-disruption-handler/blob/main/docs/monitoring.md#"
	monitoredNames = regexp.MustCompile(`^(` + Namespace + `_|rest_client_)`)
	descName       = regexp.MustCompile(`^Desc\{fqName: "([^"]+)"`)
	labelValues    = regexp.MustCompile(`^label_values\((.+),\s*[a-zA-Z_][a-zA-Z0-9_]*\)$`)
)

// exported is what the function's registry exports: every family its collectors describe (a
// vector without children is absent from Gather, never from Describe), and which are histograms.
type exported struct {
	families   map[string]bool
	histograms map[string]bool
}

func exportedMetrics(t *testing.T) exported {
	t.Helper()
	r := New()
	e := exported{families: map[string]bool{}, histograms: map[string]bool{}}
	for _, d := range describe(r.reg) {
		e.families[d] = true
	}
	for _, c := range r.collectors() {
		switch c.(type) {
		case prometheus.Histogram, *prometheus.HistogramVec:
			for _, d := range describe(c) {
				e.histograms[d] = true
			}
		}
	}
	if len(e.families) == 0 || len(e.histograms) == 0 {
		t.Fatalf("the registry describes %d families, %d histograms", len(e.families), len(e.histograms))
	}
	return e
}

// describe returns the family names c describes.
func describe(c prometheus.Collector) []string {
	ch := make(chan *prometheus.Desc)
	go func() { c.Describe(ch); close(ch) }()
	var names []string
	for d := range ch {
		if m := descName.FindStringSubmatch(d.String()); m != nil {
			names = append(names, m[1])
		}
	}
	return names
}

// family names the exported family a PromQL series name reads: itself, or a histogram's
// _bucket/_count/_sum series.
func (e exported) family(name string) (string, bool) {
	if e.families[name] {
		return name, true
	}
	for _, suffix := range []string{"_bucket", "_count", "_sum"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && e.histograms[base] {
			return base, true
		}
	}
	return "", false
}

// checkQuery reads expr and returns the monitored metric names it uses that the registry does not
// export, and the families it uses.
func (e exported) checkQuery(expr string) (unknown, used []string, err error) {
	names, err := promqlMetrics(expr)
	if err != nil {
		return nil, nil, err
	}
	for _, n := range names {
		if !monitoredNames.MatchString(n) {
			continue
		}
		if f, ok := e.family(n); ok {
			used = append(used, f)
		} else {
			unknown = append(unknown, n)
		}
	}
	return unknown, used, nil
}

// ruleFile is the groups: content of the PrometheusRule spec.
type ruleFile struct {
	Groups []struct {
		Name     string `json:"name"`
		Interval string `json:"interval,omitempty"`
		Rules    []rule `json:"rules"`
	} `json:"groups"`
}

type rule struct {
	Alert       string            `json:"alert,omitempty"`
	Record      string            `json:"record,omitempty"`
	Expr        string            `json:"expr"`
	For         string            `json:"for,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

func readRules(t *testing.T) []rule {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(monitoringDir, "alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var f ruleFile
	// Strict: a misspelt key (annotation:, label:) would otherwise vanish silently.
	if err := yaml.UnmarshalStrict(data, &f); err != nil {
		t.Fatalf("alerts.yaml: %v", err)
	}
	var rules []rule
	for _, g := range f.Groups {
		rules = append(rules, g.Rules...)
	}
	return rules
}

// alertQueries are the alerts' expressions, by alert.
func alertQueries(t *testing.T) map[string]string {
	q := map[string]string{}
	for _, r := range readRules(t) {
		q[r.Alert+r.Record] = r.Expr
	}
	return q
}

func readDashboard(t *testing.T) map[string]any {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(monitoringDir, "dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d map[string]any
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("dashboard.json: %v", err)
	}
	return d
}

// dashboardQueries are the panels' expressions and the template variables' queries (the
// selector inside label_values), by where they are.
func dashboardQueries(t *testing.T) map[string]string {
	d := readDashboard(t)
	q := map[string]string{}
	for i, p := range list(d["panels"]) {
		panel := p.(map[string]any)
		for j, tg := range list(panel["targets"]) {
			q[strings.Join([]string{"panel", str(panel["title"]), "target", string(rune('A' + j))}, " ")] = str(tg.(map[string]any)["expr"])
		}
		if len(list(panel["targets"])) == 0 {
			t.Errorf("panel %d (%s) has no query", i, str(panel["title"]))
		}
	}
	for _, v := range list(d["templating"].(map[string]any)["list"]) {
		variable := v.(map[string]any)
		if variable["type"] != "query" {
			continue
		}
		query := str(variable["query"])
		if m, ok := variable["query"].(map[string]any); ok {
			query = str(m["query"])
		}
		if m := labelValues.FindStringSubmatch(query); m != nil {
			query = m[1]
		}
		q["variable "+str(variable["name"])] = query
	}
	return q
}

func list(v any) []any { l, _ := v.([]any); return l }
func str(v any) string { s, _ := v.(string); return s }

// TestMonitoringUsesExportedMetrics fails when an alert or a dashboard query names a metric the
// function does not export (a rename, a typo) or does not read as PromQL.
func TestMonitoringUsesExportedMetrics(t *testing.T) {
	e := exportedMetrics(t)
	usedAnywhere := map[string]bool{}
	for _, src := range []struct {
		file    string
		queries func(*testing.T) map[string]string
		min     int // queries expected at least: an empty extraction must not pass
	}{
		{"alerts.yaml", alertQueries, 5},
		{"dashboard.json", dashboardQueries, 13},
	} {
		t.Run(src.file, func(t *testing.T) {
			queries := src.queries(t)
			if len(queries) < src.min {
				t.Fatalf("%d queries read, want at least %d", len(queries), src.min)
			}
			for where, expr := range queries {
				unknown, used, err := e.checkQuery(expr)
				switch {
				case err != nil:
					t.Errorf("%s: %v\n%s", where, err, expr)
				case len(unknown) > 0:
					t.Errorf("%s: %v not exported by the function's registry", where, unknown)
				case len(used) == 0:
					t.Errorf("%s queries none of the function's metrics: %s", where, expr)
				}
				for _, f := range used {
					usedAnywhere[f] = true
				}
			}
		})
	}
	var unused []string
	for f := range e.families {
		if monitoredNames.MatchString(f) && !usedAnywhere[f] {
			unused = append(unused, f)
		}
	}
	sort.Strings(unused)
	t.Logf("exported but in no alert or panel: %v", unused)
}

// TestCheckQuery shows that the check above catches renames and broken PromQL.
func TestCheckQuery(t *testing.T) {
	e := exportedMetrics(t)
	for _, c := range []struct {
		expr    string
		unknown []string
		bad     bool // not PromQL
	}{
		{expr: `sum by (type) (rate(argo_disruption_handler_events_total{outcome="failed"}[5m]))`},
		{expr: `histogram_quantile(0.9, sum by (le) (rate(argo_disruption_handler_event_duration_seconds_bucket[$__rate_interval])))`},
		{expr: `sum(rate(rest_client_requests_total[5m])) * on (namespace, pod) group_left () max by (namespace, pod) (argo_disruption_handler_build_info)`},
		{expr: `last_over_time(argo_disruption_handler_dead_letters_total[15m] offset 15m) unless go_goroutines`},
		{expr: `max_over_time(argo_disruption_handler_sweep_stuck_workflow_nodes[30m:1m]) > bool 0`},
		{expr: `rate(argo_disruption_handler_event_total[5m])`, unknown: []string{"argo_disruption_handler_event_total"}},
		{expr: `rest_client_request_latency_seconds_bucket`, unknown: []string{"rest_client_request_latency_seconds_bucket"}},
		{expr: `argo_disruption_handler_events_total_count`, unknown: []string{"argo_disruption_handler_events_total_count"}}, // not a histogram
		{expr: `sum(rate(argo_disruption_handler_events_total[5m])`, bad: true},
		{expr: `increse(argo_disruption_handler_events_total[5m])`, bad: true},
		{expr: `argo_disruption_handler_events_total{why="x"`, bad: true},
		{expr: `argo_disruption_handler_events_total{why=x}`, bad: true},
		{expr: `rate(argo_disruption_handler_events_total[5x])`, bad: true},
		{expr: `sum(argo_disruption_handler_events_total) argo_disruption_handler_repairs_total`, bad: true},
		{expr: `rate(sum(argo_disruption_handler_events_total)[5m])`, bad: true},
		{expr: `{{ $labels.namespace }}`, bad: true},
	} {
		unknown, _, err := e.checkQuery(c.expr)
		if (err != nil) != c.bad {
			t.Errorf("%s: error %v, want one: %v", c.expr, err, c.bad)
		}
		if strings.Join(unknown, ",") != strings.Join(c.unknown, ",") {
			t.Errorf("%s: unknown %v, want %v", c.expr, unknown, c.unknown)
		}
	}
}

// TestAlerts checks every alert's labels, annotations and runbook, and that none waits for the
// function to be absent: it scales to zero, so such an alert would fire most of the time.
func TestAlerts(t *testing.T) {
	doc, err := os.ReadFile(monitoringDoc)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"ArgoDisruptionHandlerSweepNotRunning":          "warning",
		"ArgoDisruptionHandlerDeadLetters":              "warning",
		"ArgoDisruptionHandlerRepairsFailing":           "critical",
		"ArgoDisruptionHandlerSweepFoundStuckWorkflows": "warning",
		"ArgoDisruptionHandlerNothingInScope":           "warning",
	}
	rules := readRules(t)
	seen := map[string]bool{}
	for _, r := range rules {
		t.Run(r.Alert, func(t *testing.T) {
			severity, ok := want[r.Alert]
			if !ok {
				t.Fatalf("unexpected rule %q (add it to this test and to docs/monitoring.md)", r.Alert+r.Record)
			}
			seen[r.Alert] = true
			if r.Labels["severity"] != severity {
				t.Errorf("severity %q, want %q", r.Labels["severity"], severity)
			}
			for _, a := range []string{"summary", "description", "runbook_url"} {
				if strings.TrimSpace(r.Annotations[a]) == "" {
					t.Errorf("no %s annotation", a)
				}
			}
			if got, want := r.Annotations["runbook_url"], runbookPrefix+strings.ToLower(r.Alert); got != want {
				t.Errorf("runbook_url %q, want %q", got, want)
			}
			if !regexp.MustCompile(`(?m)^## ` + regexp.QuoteMeta(r.Alert) + `$`).Match(doc) {
				t.Errorf("docs/monitoring.md has no runbook heading %q", "## "+r.Alert)
			}
			if r.For != "" {
				if _, err := time.ParseDuration(r.For); err != nil {
					t.Errorf("for: %v", err)
				}
			}
			if strings.Contains(r.Expr, "absent") {
				t.Errorf("uses absent(): the function is scaled to zero most of the time")
			}
		})
	}
	for name := range want {
		if !seen[name] {
			t.Errorf("alert %s is missing", name)
		}
	}
}

// TestDashboard checks what makes the dashboard portable: the data source and namespace
// variables, and every query going through them.
func TestDashboard(t *testing.T) {
	d := readDashboard(t)
	if v, _ := d["schemaVersion"].(float64); v < 39 {
		t.Errorf("schemaVersion %v, want 39 or later", d["schemaVersion"])
	}
	variables := map[string]map[string]any{}
	for _, v := range list(d["templating"].(map[string]any)["list"]) {
		variables[str(v.(map[string]any)["name"])] = v.(map[string]any)
	}
	if ds := variables["datasource"]; ds == nil || ds["type"] != "datasource" || ds["query"] != "prometheus" {
		t.Errorf("no datasource variable of Prometheus data sources: %v", ds)
	}
	if ns := variables["namespace"]; ns == nil || ns["type"] != "query" {
		t.Errorf("no namespace query variable: %v", ns)
	}
	ids := map[float64]bool{}
	for _, p := range list(d["panels"]) {
		panel := p.(map[string]any)
		title := str(panel["title"])
		if id, _ := panel["id"].(float64); ids[id] {
			t.Errorf("panel %q: id %v used twice", title, id)
		} else {
			ids[id] = true
		}
		if ds, _ := panel["datasource"].(map[string]any); ds["uid"] != "${datasource}" {
			t.Errorf("panel %q: data source %v, want ${datasource}", title, panel["datasource"])
		}
		for _, tg := range list(panel["targets"]) {
			target := tg.(map[string]any)
			if ds, _ := target["datasource"].(map[string]any); ds["uid"] != "${datasource}" {
				t.Errorf("panel %q: target data source %v, want ${datasource}", title, target["datasource"])
			}
			if !strings.Contains(str(target["expr"]), `namespace=~"$namespace"`) {
				t.Errorf("panel %q: query ignores the namespace variable: %s", title, target["expr"])
			}
		}
	}
}

// TestMetricsDocumented fails when a metric the function exports is missing from
// docs/monitoring.md.
func TestMetricsDocumented(t *testing.T) {
	doc, err := os.ReadFile(monitoringDoc)
	if err != nil {
		t.Fatal(err)
	}
	for f := range exportedMetrics(t).families {
		if monitoredNames.MatchString(f) && !strings.Contains(string(doc), "`"+f+"`") {
			t.Errorf("docs/monitoring.md does not describe `%s`", f)
		}
	}
}
