// Package metrics counts what the function receives and does, in Prometheus format, on its own
// listener (ADH_METRICS_ADDRESS, default :9095; Knative reserves 9090 and 9091 for queue-proxy) beside func-go's CloudEvents port.
//
// Why scraping works with scale-to-zero: Knative keeps a revision's last pod for its stable window
// (60 s by default) after the last request, plus scale-to-zero-pod-retention-period, so a scrape
// every 15–30 s reads each pod's final counts before it goes; a new pod starts its counters at
// zero, which rate()/increase() treat as a counter reset. The pod template carries the
// prometheus.io/scrape|port|path annotations (deploy/), since a Knative Service may declare only
// its serving port.
//
// Every method is safe on a nil *Recorder, so tests and the sweep command pass none.
package metrics

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Namespace prefixes every metric.
const Namespace = "argo_disruption_handler"

// Recorder holds the metrics, in a registry of their own.
type Recorder struct {
	reg        *prometheus.Registry
	events     *prometheus.CounterVec
	eventTime  *prometheus.HistogramVec
	repairs    *prometheus.CounterVec
	apiTime    *prometheus.HistogramVec
	sweepTime  prometheus.Histogram
	sweepFound prometheus.Gauge
	sweepSeen  prometheus.Gauge
	sweepLast  prometheus.Gauge
	sweepStuck *prometheus.CounterVec
	notOurs    prometheus.Counter
	deadLetter *prometheus.CounterVec
	ignored    *prometheus.CounterVec
	buildInfo  prometheus.Gauge
}

// New registers every metric: the function's, build_info, client-go's rest_client_* (shared by
// every Recorder of the process, see clientgo.go), and the Go runtime and process collectors.
func New() *Recorder {
	r := &Recorder{
		reg: prometheus.NewRegistry(),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "events_total",
			Help: "CloudEvents received, by type and outcome (handled, ignored, refused = 4xx, failed = 5xx)."}, []string{"type", "outcome"}),
		eventTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Name: "event_duration_seconds",
			Help: "Time to handle one CloudEvent, by type.", Buckets: []float64{.0001, .001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 25}}, []string{"type"}),
		repairs: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "repairs_total",
			Help: "Repair steps the API server accepted, by ladder action, disruption reason and dry run."}, []string{"action", "reason", "dry_run"}),
		apiTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Name: "api_request_duration_seconds",
			Help: "Kubernetes API requests, by verb, resource and status code.", Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}}, []string{"verb", "resource", "code"}),
		sweepTime: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: Namespace, Name: "sweep_duration_seconds",
			Help: "Duration of one sweep run.", Buckets: []float64{.01, .05, .1, .5, 1, 2.5, 5, 10, 20, 30}}),
		sweepFound: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Name: "sweep_stuck_workflow_nodes",
			Help: "Stuck workflow nodes the last sweep run found."}),
		sweepSeen: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Name: "sweep_workflows_scanned",
			Help: "Running workflows the last sweep run scanned."}),
		// A timestamp rather than a count: a pod woken by the sweep's tick runs it before its
		// first scrape, so increase() of a per-pod count never sees that run.
		sweepLast: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Name: "sweep_last_run_timestamp_seconds",
			Help: "Unix time the last sweep run of this pod ended."}),
		sweepStuck: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "sweep_stuck_found_total",
			Help: "Stuck workflow nodes found by sweeps, by whether the scan completed."}, []string{"complete"}),
		notOurs: prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Name: "not_ours_total",
			Help: "Repair targets whose objects on the cluster are not the ones the signal named (another incarnation, a name that is not the node's): nothing written."}),
		deadLetter: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "dead_letters_total",
			Help: "Dead-lettered CloudEvents received back from the broker, by original type and the status the function had answered."}, []string{"type", "code"}),
		ignored: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "events_ignored_total",
			Help: "CloudEvents that needed nothing, by why: namespace_out_of_scope, other_controller_instance (both: the configuration may not match the workflows), not_relevant (the decoder's verdict), nothing_to_do."}, []string{"why"}),
		buildInfo: newBuildInfo(),
	}
	r.reg.MustRegister(r.collectors()...)
	r.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return r
}

// collectors are the function's own metrics and client-go's, which the monitoring files
// (deploy/chart/monitoring) query; their tests read the names and types from here.
func (r *Recorder) collectors() []prometheus.Collector {
	own := []prometheus.Collector{r.events, r.eventTime, r.repairs, r.apiTime, r.sweepTime, r.sweepFound, r.sweepSeen, r.sweepLast,
		r.sweepStuck, r.notOurs, r.deadLetter, r.ignored, r.buildInfo}
	return append(own, clientGoCollectors()...)
}

// Why an event needed nothing (the label of events_ignored_total).
const (
	IgnoredNamespace   = "namespace_out_of_scope"
	IgnoredInstance    = "other_controller_instance"
	IgnoredNotRelevant = "not_relevant"
	IgnoredNothingToDo = "nothing_to_do"
)

// EventIgnored counts an event that needed nothing, by one of the Ignored* reasons.
func (r *Recorder) EventIgnored(why string) {
	if r == nil {
		return
	}
	r.ignored.WithLabelValues(why).Inc()
}

// Event outcomes.
const (
	Handled = "handled"
	Ignored = "ignored"
	Refused = "refused"
	Failed  = "failed"
)

// Event counts one CloudEvent. ceType should be one the registry knows, or "unknown" (the label
// set must stay bounded whatever senders post).
func (r *Recorder) Event(ceType, outcome string, d time.Duration) {
	if r == nil {
		return
	}
	r.events.WithLabelValues(ceType, outcome).Inc()
	r.eventTime.WithLabelValues(ceType).Observe(d.Seconds())
}

// Repair counts one accepted repair step.
func (r *Recorder) Repair(action, reason string, dryRun bool) {
	if r == nil {
		return
	}
	r.repairs.WithLabelValues(action, reason, strconv.FormatBool(dryRun)).Inc()
}

// NotOurs counts one target left alone because its objects are not the ones the signal named.
func (r *Recorder) NotOurs() {
	if r == nil {
		return
	}
	r.notOurs.Inc()
}

// DeadLetter counts one dead-lettered event the broker handed back.
func (r *Recorder) DeadLetter(ceType, code string) {
	if r == nil {
		return
	}
	r.deadLetter.WithLabelValues(ceType, code).Inc()
}

// Sweep records one sweep run.
func (r *Recorder) Sweep(d time.Duration, scanned, stuck int, complete bool) {
	if r == nil {
		return
	}
	r.sweepTime.Observe(d.Seconds())
	r.sweepLast.SetToCurrentTime()
	r.sweepSeen.Set(float64(scanned))
	r.sweepFound.Set(float64(stuck))
	r.sweepStuck.WithLabelValues(strconv.FormatBool(complete)).Add(float64(stuck))
}

// WrapTransport times every API request (for rest.Config.WrapTransport). It is kept beside
// client-go's rest_client_* series because those carry no resource: this one tells which repair
// step's requests (a workflowtaskresults patch, a pods delete) are slow or refused, per attempt.
func (r *Recorder) WrapTransport(rt http.RoundTripper) http.RoundTripper {
	if r == nil {
		return rt
	}
	return roundTripper{rt: rt, hist: r.apiTime}
}

type roundTripper struct {
	rt   http.RoundTripper
	hist *prometheus.HistogramVec
}

func (t roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := t.rt.RoundTrip(req)
	code := "error"
	if err == nil {
		code = strconv.Itoa(resp.StatusCode)
	}
	t.hist.WithLabelValues(Verb(req), Resource(req.URL.Path), code).Observe(time.Since(start).Seconds())
	return resp, err
}

// Verb names a request as kubectl's audit log does (get/list/create/patch/delete…).
func Verb(req *http.Request) string {
	switch req.Method {
	case http.MethodGet:
		if strings.Contains(req.URL.RawQuery, "watch=true") {
			return "watch"
		}
		if isCollection(req.URL.Path) {
			return "list"
		}
		return "get"
	case http.MethodPost:
		return "create"
	case http.MethodPut:
		return "update"
	default:
		return strings.ToLower(req.Method)
	}
}

// Resource extracts the resource (and subresource) from an API path:
// /api/v1/namespaces/argo/pods/p → pods; /apis/argoproj.io/v1alpha1/namespaces/a/workflows → workflows.
func Resource(path string) string {
	parts := apiParts(path)
	switch len(parts) {
	case 0:
		return "other"
	case 1, 2:
		return parts[0]
	default:
		return parts[0] + "/" + parts[2]
	}
}

// apiParts returns resource[, name[, subresource]] of an API path, without group, version and
// namespace.
func apiParts(path string) []string {
	p := strings.Split(strings.Trim(path, "/"), "/")
	switch {
	case len(p) >= 2 && p[0] == "api":
		p = p[2:]
	case len(p) >= 3 && p[0] == "apis":
		p = p[3:]
	default:
		return nil
	}
	if len(p) >= 2 && p[0] == "namespaces" && len(p) > 2 {
		p = p[2:]
	}
	return p
}

func isCollection(path string) bool { return len(apiParts(path)) == 1 }

// Handler serves the registry in Prometheus text format.
func (r *Recorder) Handler() http.Handler {
	return promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{})
}

// Serve listens on addr and serves /metrics until the returned stop function is called; the
// bound address is returned (addr may end in :0).
func (r *Recorder) Serve(addr string) (bound string, stop func(context.Context) error, err error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", r.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	// Serve returns http.ErrServerClosed once stopped; the listener is ours, so that is its only
	// way out.
	go func() { _ = srv.Serve(l) }()
	return l.Addr().String(), srv.Shutdown, nil
}
