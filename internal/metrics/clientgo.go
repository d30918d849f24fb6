package metrics

import (
	"context"
	"net/url"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientmetrics "k8s.io/client-go/tools/metrics"
)

// client-go reports its requests to process-wide hooks (k8s.io/client-go/tools/metrics) that can
// be set only once, so one set of collectors serves every Recorder of the process and each
// Recorder registers that set in its own registry; a Recorder's rest_client_* series therefore
// count every client of the process, which in the function is all of them anyway. Names, labels
// and buckets are those of k8s.io/component-base/metrics/prometheus/restclient, so the
// function's series read like every Kubernetes component's.
var clientGo struct {
	once        sync.Once
	requests    *prometheus.CounterVec
	latency     *prometheus.HistogramVec
	rateLimiter *prometheus.HistogramVec
	retries     *prometheus.CounterVec
	// hooked is false when another package set client-go's hooks first: the series then stay empty.
	hooked bool
}

// clientGoBuckets are component-base's rest_client_* buckets.
var clientGoBuckets = []float64{0.005, 0.025, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60}

// clientGoCollectors sets client-go's hooks on the first call and returns the collectors they feed.
func clientGoCollectors() []prometheus.Collector {
	clientGo.once.Do(func() {
		clientGo.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rest_client_requests_total",
			Help: "Number of HTTP requests, partitioned by status code, method, and host."}, []string{"code", "method", "host"})
		clientGo.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "rest_client_request_duration_seconds",
			Help: "Request latency in seconds, client-side throttling and retries included. Broken down by verb, and host.", Buckets: clientGoBuckets},
			[]string{"verb", "host"})
		clientGo.rateLimiter = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "rest_client_rate_limiter_duration_seconds",
			Help: "Client side rate limiter latency in seconds. Broken down by verb, and host.", Buckets: clientGoBuckets}, []string{"verb", "host"})
		clientGo.retries = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rest_client_request_retries_total",
			Help: "Number of request retries, partitioned by status code, verb, and host."}, []string{"code", "verb", "host"})
		result := &resultHook{clientGo.requests}
		clientmetrics.Register(clientmetrics.RegisterOpts{
			RequestResult:      result,
			RequestLatency:     &latencyHook{clientGo.latency},
			RateLimiterLatency: &latencyHook{clientGo.rateLimiter},
			RequestRetry:       &retryHook{clientGo.retries},
		})
		// Register is itself once per process: a hook other than ours means it was taken.
		clientGo.hooked = clientmetrics.RequestResult == clientmetrics.ResultMetric(result)
	})
	return []prometheus.Collector{clientGo.requests, clientGo.latency, clientGo.rateLimiter, clientGo.retries}
}

// ClientGoHooked says whether client-go reports to the rest_client_* collectors (false: another
// package of the process registered its own hooks first).
func ClientGoHooked() bool {
	clientGoCollectors()
	return clientGo.hooked
}

type resultHook struct{ c *prometheus.CounterVec }

func (h *resultHook) Increment(_ context.Context, code, method, host string) {
	h.c.WithLabelValues(code, method, host).Inc()
}

type latencyHook struct{ h *prometheus.HistogramVec }

func (h *latencyHook) Observe(_ context.Context, verb string, u url.URL, d time.Duration) {
	h.h.WithLabelValues(verb, u.Host).Observe(d.Seconds())
}

type retryHook struct{ c *prometheus.CounterVec }

func (h *retryHook) IncrementRetry(_ context.Context, code, verb, host string) {
	h.c.WithLabelValues(code, verb, host).Inc()
}
