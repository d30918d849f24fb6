// Package wiring is the composition root: it builds every part of the function from one
// *config.Config, once, with constructors only. The func runtime (function.go), the sweep
// command and the benchmarks all build the function here, so what runs in a test is what runs in
// the cluster.
package wiring

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"time"

	"go.uber.org/zap"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"function/config"
	"function/eventing/families"
	"function/handlers"
	"function/internal/argoworkflow"
	"function/internal/lookup"
	"function/internal/metrics"
	"function/internal/notify"
	"function/internal/repair"
	"function/internal/senderauth"
	"function/internal/sweep"
)

// Settings of the parts that are not configuration a user tunes (docs/scale.md says why).
const (
	// FollowUpsMax bounds the targets waiting for the controller at once; beyond, the sweep takes them.
	FollowUpsMax = 1000
	// FollowUpFirst is how long after the event the first follow-up re-reads.
	FollowUpFirst = 500 * time.Millisecond
	// InstanceIndexAge is how long one listing of Nodes and NodeClaims answers EC2 instance lookups.
	InstanceIndexAge = 30 * time.Second
	// TokenReviewQPS and TokenReviewBurst bound the senders' TokenReviews, on a client apart from
	// ADH_KUBE_QPS: a Trigger's token is reviewed about once a minute, so this leaves room for
	// many Triggers and broker replicas, and is all a flood of junk tokens can take.
	TokenReviewQPS   = 10
	TokenReviewBurst = 20
)

// Options say how to reach the cluster; everything else comes from the configuration.
type Options struct {
	// RESTConfig is the cluster as a command line resolved it (the sweep command's kubectl
	// flags); nil: Kubeconfig. Its rate and timeout are replaced by the configuration's.
	RESTConfig *rest.Config
	// Kubeconfig is a kubeconfig path ("": $KUBECONFIG, in-cluster, ~/.kube/config).
	Kubeconfig string
	// UserAgent names the caller to the API server ("": the component name).
	UserAgent string
	// RequestTimeout bounds each API request (0: the configured event timeout).
	RequestTimeout time.Duration
	// Transport, when set, wraps the clients' transport (a benchmark's request counter).
	Transport func(http.RoundTripper) http.RoundTripper
	// ServeMetrics serves /metrics on the configured address (when one is set).
	ServeMetrics bool
	// Log receives the handler's logs (nil: none).
	Log *zap.SugaredLogger
}

// Parts are the built function.
type Parts struct {
	Clients  *Clients
	Repairer *repair.Repairer
	Sweeper  *sweep.Sweeper
	Sender   *senderauth.Authenticator
	Handler  *handlers.Handler
	// Notifier sends a CloudEvent per repair and warning recorded (nil: no sink, off).
	Notifier *notify.Emitter
	// MetricsAddress is where /metrics is served ("": not served).
	MetricsAddress string
	stopMetrics    func(context.Context) error
}

// Build builds the clients from o and the parts from cfg. It does not contact the API server.
// A metrics listener that cannot be opened is logged and skipped: repairs must not depend on it.
func Build(cfg *config.Config, o Options) (*Parts, error) {
	if o.Log == nil {
		o.Log = zap.NewNop().Sugar()
	}
	if o.UserAgent == "" {
		o.UserAgent = argoworkflow.Component
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = cfg.EventTimeout
	}
	rc, err := RESTConfig(ClientOptions{Base: o.RESTConfig, Kubeconfig: o.Kubeconfig, QPS: cfg.KubeQPS, Burst: cfg.KubeBurst, Timeout: o.RequestTimeout, UserAgent: o.UserAgent})
	if err != nil {
		return nil, err
	}
	if o.Transport != nil {
		rc.Wrap(o.Transport)
	}
	var rec *metrics.Recorder
	var bound string
	var stop func(context.Context) error
	if o.ServeMetrics && cfg.MetricsAddress != "" {
		rec = metrics.New()
		if bound, stop, err = rec.Serve(cfg.MetricsAddress); err != nil {
			o.Log.Errorw("metrics not served", "address", cfg.MetricsAddress, "error", err)
			rec, bound, stop = nil, "", nil
		} else {
			rc.Wrap(rec.WrapTransport)
		}
	}
	cs, err := NewClients(rc)
	if err == nil {
		// Its own budget: a flood of junk tokens must not wait the repairs' requests out.
		cs.TokenReviews, err = kubernetes.NewForConfig(WithOwnBudget(rc, TokenReviewQPS, TokenReviewBurst))
		if err != nil {
			err = fmt.Errorf("building the TokenReview client for %s: %w", rc.Host, err)
		}
	}
	if err != nil {
		if stop != nil {
			_ = stop(context.Background())
		}
		return nil, err
	}
	p := FromClients(cfg, cs, rec, o.Log)
	p.MetricsAddress, p.stopMetrics = bound, stop
	return p, nil
}

// FromClients builds the parts over clients already made (fake clientsets in unit tests and
// micro-benchmarks). rec and log may be nil.
func FromClients(cfg *config.Config, cs *Clients, rec *metrics.Recorder, log *zap.SugaredLogger) *Parts {
	if log == nil {
		log = zap.NewNop().Sugar()
	}
	sc := config.Scope{Namespaces: cfg.Namespaces, Excluded: cfg.ExcludedNamespaces, ControllerInstanceID: cfg.ControllerInstanceID}
	emitter := notifier(cfg, os.Getenv, rec, log)
	ro := repair.Options{
		Policy:    repair.Policy{Scope: sc, NodeErrorGrace: cfg.NodeErrorGrace},
		DryRun:    cfg.DryRun,
		Attempts:  cfg.ConflictRetries,
		Metrics:   rec,
		FollowUps: &repair.FollowUps{For: cfg.ControllerWait, Max: FollowUpsMax, First: FollowUpFirst},
	}
	if emitter != nil {
		ro.Notifier = emitter // not a nil *Emitter in a non-nil interface
	}
	r := repair.New(cs.Kube, cs.Argo, ro)
	sw := &sweep.Sweeper{Kube: cs.Kube, Argo: cs.Argo, Repairer: r, Scope: sc, Grace: cfg.SweepGrace, PageSize: cfg.SweepPageSize}
	reviews := cs.TokenReviews
	if reviews == nil {
		reviews = cs.Kube
	}
	auth := &senderauth.Authenticator{Kube: reviews, Audience: cfg.OIDCAudience, Subjects: cfg.OIDCSubjects, Required: cfg.OIDCRequired}
	h := handlers.New(handlers.Options{
		Kube:              cs.Kube,
		Registry:          families.Registry(),
		Repairer:          r,
		Scope:             sc,
		Finder:            finder(cs),
		AllowedSources:    cfg.AllowedSources,
		Sender:            auth,
		Sweeper:           sw,
		SweepLease:        &sweep.Lease{Kube: cs.Kube, Namespace: cfg.StateNamespace, Name: sweep.LeaseName, Holder: r.Host()},
		SweepBudget:       cfg.SweepBudget,
		Metrics:           rec,
		MaxBodyBytes:      cfg.MaxBodyBytes,
		NodeRepairWorkers: cfg.NodeRepairWorkers,
		Timeout:           cfg.EventTimeout,
		Log:               log,
	})
	return &Parts{Clients: cs, Repairer: r, Sweeper: sw, Sender: auth, Handler: h, Notifier: emitter}
}

// notifier builds the emitter of notifications: to ADH_NOTIFICATION_SINK, else to the K_SINK a
// SinkBinding injected. It says once whether notifications are on; a sink that cannot be used
// is logged and notifications are off, since repairs must not depend on them.
func notifier(cfg *config.Config, getenv func(string) string, rec *metrics.Recorder, log *zap.SugaredLogger) *notify.Emitter {
	sink := notify.SinkFrom(cfg.NotificationSink, getenv)
	if sink.URL == "" {
		log.Infow("notifications off: neither ADH_NOTIFICATION_SINK nor K_SINK (a SinkBinding's) names a sink")
		return nil
	}
	e, err := notify.New(notify.Options{Sink: sink, Namespace: cfg.StateNamespace, Timeout: cfg.NotificationTimeout, Metrics: rec, Log: log})
	if err != nil {
		log.Errorw("notifications off: the sink cannot be used", "from", sink.From, "error", err)
		return nil
	}
	log.Infow("notifications on", "sink", e.SinkURL(), "from", sink.From, "source", e.Source(), "timeout", cfg.NotificationTimeout,
		"types", notify.Types, "tokenFile", sink.TokenFile)
	return e
}

// Stop ends the follow-ups still waiting for the controller (the sweep takes them) once their
// runs in progress finish, then closes the metrics listener.
func (p *Parts) Stop(ctx context.Context) error {
	p.Handler.Stop(ctx)
	if p.stopMetrics != nil {
		return p.stopMetrics(ctx)
	}
	return nil
}

// finder looks disruptions up with cs; NodeClaims are read as printed Tables when cs can make raw
// requests.
func finder(cs *Clients) lookup.Finder {
	f := lookup.Finder{Kube: cs.Kube, Dynamic: cs.Dynamic, Instances: &lookup.InstanceIndex{MaxAge: InstanceIndexAge}}
	if cs.REST != nil {
		f.Tables = lookup.RESTTables{Client: cs.REST}
	}
	return f
}
