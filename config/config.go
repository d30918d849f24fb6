// Package config holds the function's settings, read from the environment with envconfig.
//
// Every setting has a default that is safe for a cluster running Argo Workflows with one
// controller and no instance ID. The Helm chart's values (deploy/chart) render every setting into
// one ConfigMap; deploy's unit tests check it sets each of them, with these defaults.
package config

import (
	"errors"
	"fmt"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/kelseyhightower/envconfig"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Prefix is the envconfig prefix: settings are read from ADH_<NAME>.
const Prefix = "ADH"

// Config is the function's whole configuration.
type Config struct {
	// DryRun computes and logs the plan, and sends every write with dryRun=All: nothing changes.
	DryRun bool `envconfig:"DRY_RUN" default:"false" desc:"log the repair plan and send every write as a server-side dry run"`

	// Namespaces restricts the function to these namespaces (empty: all namespaces).
	Namespaces []string `envconfig:"NAMESPACES" default:"" desc:"comma-separated namespaces to act in; empty means all"`
	// ExcludedNamespaces are never touched, even when listed in Namespaces.
	ExcludedNamespaces []string `envconfig:"EXCLUDED_NAMESPACES" default:"kube-system" desc:"comma-separated namespaces never to act in"`

	// AllowedSources restricts the CloudEvent sources acted on (empty: all). An entry matches a
	// source exactly, or, ending with "*", every source starting with the rest. Anything that can
	// reach the function's URL can post an event naming any workflow pod; with the list set, only
	// the configured senders (the ApiServerSource's API server URL, the SQS source) are read.
	AllowedSources []string `envconfig:"ALLOWED_SOURCES" default:"" desc:"comma-separated CloudEvent sources to act on (exact, or a prefix ending with *); empty means all"`

	// OIDCAudience is the audience a sender's token must be issued for: what the Triggers name
	// in spec.subscriber.audience (Knative Eventing OIDC sender authentication).
	OIDCAudience string `envconfig:"OIDC_AUDIENCE" default:"serving.knative.dev/service/argo-disruption-handler/argo-disruption-handler" desc:"audience a sender's bearer token must be issued for"`
	// OIDCSubjects are the identities allowed to send, path.Match patterns: by default the
	// ServiceAccounts eventing makes for the Triggers of the function's namespace.
	OIDCSubjects []string `envconfig:"OIDC_SUBJECTS" default:"system:serviceaccount:argo-disruption-handler:*-oidc-eventing.knative.dev-trigger" desc:"comma-separated identities allowed to send (path.Match patterns)"`
	// OIDCRequired refuses (401) a request without a bearer token.
	OIDCRequired bool `envconfig:"OIDC_REQUIRED" default:"false" desc:"refuse requests without a bearer token (turn on once Knative Eventing's authentication-oidc feature is)"`

	// ControllerInstanceID is the Argo controller's instanceID. Argo controllers only own workflows whose
	// workflows.argoproj.io/controller-instanceid label equals their own (absent when none is
	// configured), and so do we: a workflow of another controller is never written.
	ControllerInstanceID string `envconfig:"INSTANCE_ID" default:"" desc:"Argo controller instanceID whose workflows we repair; empty means workflows without the label"`

	// NodeErrorGrace is how long a Pod node may stay Running with no pod before the last-resort
	// step marks it Error itself. The controller's own podReconciliation does that within about
	// one requeue (10 s) on every version, so this only fires when the controller did not.
	NodeErrorGrace time.Duration `envconfig:"NODE_ERROR_GRACE" default:"60s" desc:"how long a Running Pod node may have no pod before we mark it Error (last resort)"`

	// ControllerWait bounds how long a repair whose task result waits for the Argo controller to
	// see a pod go (a pod the function removed, or whose last status would be read as success)
	// is followed up after its event was answered, re-reading the Workflow. Past it, the sweep
	// finishes the repair.
	ControllerWait time.Duration `envconfig:"CONTROLLER_WAIT" default:"60s" desc:"how long a repair waiting for the controller to see a pod go is followed up (0: not at all; the sweep finishes it)"`

	// ConflictRetries bounds the re-read/re-decide loop when a write gets 409 Conflict.
	ConflictRetries int `envconfig:"CONFLICT_RETRIES" default:"5" desc:"re-read and re-decide this many times on 409 Conflict before answering 503"`

	// EventTimeout bounds the work for one event; func-go's HTTP write timeout is 30 s, so the
	// answer must leave well before that or the broker sees a reset instead of a 503.
	EventTimeout time.Duration `envconfig:"EVENT_TIMEOUT" default:"10s" desc:"deadline for handling one event (func-go closes the connection at 30 s)"`

	// MaxBodyBytes is the largest event data accepted; larger is answered 413.
	MaxBodyBytes int `envconfig:"MAX_BODY_BYTES" default:"4194304" desc:"largest event data accepted, in bytes (413 above)"`

	// KubeQPS and KubeBurst bound our client-side request rate, all clientsets together, so that
	// a burst of pod deletions does not starve the Argo controller of API server capacity
	// (docs/scale.md sizes them). The senders' TokenReviews have a budget of their own
	// (wiring.TokenReviewQPS), so that junk tokens cannot spend this one.
	KubeQPS   float32 `envconfig:"KUBE_QPS" default:"100" desc:"client-go QPS toward the API server (all clients together; TokenReviews apart)"`
	KubeBurst int     `envconfig:"KUBE_BURST" default:"200" desc:"client-go burst toward the API server (all clients together; TokenReviews apart)"`

	// NodeRepairWorkers bounds the pods of one node-wide signal (a Node or NodeClaim deleted, an
	// instance terminated) repaired at once. The shared QPS budget is what bounds the rate; the
	// workers hide each call's latency (docs/scale.md).
	NodeRepairWorkers int `envconfig:"NODE_REPAIR_WORKERS" default:"8" desc:"pods of one node-wide signal repaired at once"`

	// SweepBudget bounds one PingSource-driven sweep; the next ping resumes where it stopped.
	// It must leave room inside func-go's 30 s write timeout for the last page and the answer.
	SweepBudget time.Duration `envconfig:"SWEEP_BUDGET" default:"20s" desc:"time budget of one sweep (a PingSource tick); the next tick resumes where it stopped"`
	// SweepGrace is how long a finished node may keep its task result incomplete, or a pod stay
	// Terminating, before the sweep picks it: the wait container may still be saving outputs.
	SweepGrace time.Duration `envconfig:"SWEEP_GRACE" default:"2m" desc:"how long a finished node may keep its task result incomplete before the sweep repairs it"`
	// SweepPageSize bounds one LIST of Running workflows.
	SweepPageSize int64 `envconfig:"SWEEP_PAGE_SIZE" default:"100" desc:"workflows per LIST page in a sweep"`
	// StateNamespace holds the sweep's Lease (who sweeps now, where the last sweep stopped):
	// the function's own namespace.
	StateNamespace string `envconfig:"STATE_NAMESPACE" default:"argo-disruption-handler" desc:"namespace of the sweep Lease (the function's own)"`

	// MetricsAddress is where /metrics is served in Prometheus format ("" turns it off). A
	// Knative Service declares only its serving port; Prometheus scrapes this one by the pod's
	// prometheus.io/* annotations.
	MetricsAddress string `envconfig:"METRICS_ADDRESS" default:":9095" desc:"listen address of the Prometheus /metrics endpoint; empty turns it off"`

	// NotificationSink is where a CloudEvent is sent for each repair and warning recorded
	// (docs/notifications.md): normally the Broker. Empty: K_SINK, which a SinkBinding injects;
	// neither set: no notifications.
	NotificationSink string `envconfig:"NOTIFICATION_SINK" default:"" desc:"URL to send a CloudEvent to for each repair and warning recorded; empty means K_SINK (a SinkBinding's), and without either notifications are off"`
	// NotificationTimeout bounds one notification's send, made after the repair's writes and
	// before the answer: a sink that does not answer costs each repair at most this.
	NotificationTimeout time.Duration `envconfig:"NOTIFICATION_TIMEOUT" default:"2s" desc:"deadline for sending one notification (its failure is logged and counted, never answered)"`

	// LogLevel is the zap level: debug, info, warn, error.
	LogLevel string `envconfig:"LOG_LEVEL" default:"info" desc:"debug, info, warn or error"`
}

// Load reads the configuration from the environment and validates it.
func Load() (*Config, error) {
	var c Config
	if err := envconfig.Process(Prefix, &c); err != nil {
		return nil, fmt.Errorf("reading %s_* settings: %w", Prefix, err)
	}
	return c.finish()
}

// finish cleans the lists and validates what envconfig read.
func (c *Config) finish() (*Config, error) {
	c.Namespaces = cleanList(c.Namespaces)
	c.ExcludedNamespaces = cleanList(c.ExcludedNamespaces)
	c.AllowedSources = cleanList(c.AllowedSources)
	c.OIDCSubjects = cleanList(c.OIDCSubjects)
	c.NotificationSink = strings.TrimSpace(c.NotificationSink)
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// Validate reports every invalid setting at once, each with its variable name.
func (c *Config) Validate() error {
	var p problems
	c.validateNames(&p)
	c.validateSender(&p)
	c.validateRepairBounds(&p)
	c.validateSweepBounds(&p)
	c.validateNotifications(&p)
	return errors.Join(p...)
}

// problems collects what is wrong with the settings, each error naming its variable.
type problems []error

func (p *problems) add(name, format string, args ...any) {
	*p = append(*p, fmt.Errorf("%s_%s: %s", Prefix, name, fmt.Sprintf(format, args...)))
}

// namespaceNames reports the entries of a namespace list that are not namespace names.
func (p *problems) namespaceNames(name string, namespaces ...string) {
	for _, ns := range namespaces {
		if msgs := validation.IsDNS1123Label(ns); len(msgs) > 0 {
			p.add(name, "%q is not a namespace name: %s", ns, strings.Join(msgs, "; "))
		}
	}
}

// validateNames checks the names the scope and the state are given by.
func (c *Config) validateNames(p *problems) {
	p.namespaceNames("NAMESPACES", c.Namespaces...)
	p.namespaceNames("EXCLUDED_NAMESPACES", c.ExcludedNamespaces...)
	p.namespaceNames("STATE_NAMESPACE", c.StateNamespace)
	for _, src := range c.AllowedSources {
		if msg := sourcePatternError(src); msg != "" {
			p.add("ALLOWED_SOURCES", "%q %s", src, msg)
		}
	}
	if c.ControllerInstanceID != "" {
		if msgs := validation.IsValidLabelValue(c.ControllerInstanceID); len(msgs) > 0 {
			p.add("INSTANCE_ID", "%q is not a label value: %s", c.ControllerInstanceID, strings.Join(msgs, "; "))
		}
	}
	switch strings.ToLower(c.LogLevel) {
	case "debug", "info", "warn", "error":
	default:
		p.add("LOG_LEVEL", "%q is not one of debug, info, warn, error", c.LogLevel)
	}
}

// validateSender checks the authentication of who delivers events.
func (c *Config) validateSender(p *problems) {
	for _, pat := range c.OIDCSubjects {
		if _, err := path.Match(pat, ""); err != nil {
			p.add("OIDC_SUBJECTS", "%q: %v", pat, err)
		}
	}
	if c.OIDCRequired && (c.OIDCAudience == "" || len(c.OIDCSubjects) == 0) {
		p.add("OIDC_REQUIRED", "needs ADH_OIDC_AUDIENCE and ADH_OIDC_SUBJECTS")
	}
}

// validateRepairBounds checks the bounds of one event's work.
func (c *Config) validateRepairBounds(p *problems) {
	if c.NodeErrorGrace < 10*time.Second {
		// Argo's podReconciliation ignores pods for RECENTLY_STARTED_POD_DURATION (10 s);
		// acting earlier would race the controller's own decision.
		p.add("NODE_ERROR_GRACE", "%s is shorter than 10s (the controller's own grace)", c.NodeErrorGrace)
	}
	if c.ControllerWait < 0 || c.ControllerWait > 10*time.Minute {
		p.add("CONTROLLER_WAIT", "%s is outside [0s, 10m]", c.ControllerWait)
	}
	if c.ConflictRetries < 1 || c.ConflictRetries > 50 {
		p.add("CONFLICT_RETRIES", "%d is outside 1..50", c.ConflictRetries)
	}
	if c.EventTimeout <= 0 || c.EventTimeout > 25*time.Second {
		p.add("EVENT_TIMEOUT", "%s is outside (0s, 25s]: func-go's server write timeout is 30s", c.EventTimeout)
	}
	if c.MaxBodyBytes < 1024 {
		p.add("MAX_BODY_BYTES", "%d is below 1024", c.MaxBodyBytes)
	}
	if c.KubeQPS <= 0 {
		p.add("KUBE_QPS", "%v must be positive", c.KubeQPS)
	}
	if c.KubeBurst < 1 {
		p.add("KUBE_BURST", "%d must be at least 1", c.KubeBurst)
	}
	if c.NodeRepairWorkers < 1 || c.NodeRepairWorkers > 64 {
		p.add("NODE_REPAIR_WORKERS", "%d is outside [1, 64]", c.NodeRepairWorkers)
	}
}

// validateSweepBounds checks the bounds of one sweep.
func (c *Config) validateSweepBounds(p *problems) {
	if c.SweepBudget < time.Second || c.SweepBudget > 20*time.Second {
		// A page of work may follow the last budget check: 5 s of slack under func-go's 30 s.
		p.add("SWEEP_BUDGET", "%s is outside [1s, 20s]", c.SweepBudget)
	}
	if c.SweepGrace < 30*time.Second {
		p.add("SWEEP_GRACE", "%s is shorter than 30s (a wait container may still be saving outputs)", c.SweepGrace)
	}
	if c.SweepPageSize < 1 || c.SweepPageSize > 1000 {
		p.add("SWEEP_PAGE_SIZE", "%d is outside 1..1000", c.SweepPageSize)
	}
}

// validateNotifications checks where notifications go and how long one may take.
func (c *Config) validateNotifications(p *problems) {
	if c.NotificationSink != "" {
		if u, err := url.Parse(c.NotificationSink); err != nil {
			p.add("NOTIFICATION_SINK", "%v", err)
		} else if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			p.add("NOTIFICATION_SINK", "%q is not an absolute http or https URL", u.Redacted())
		}
	}
	if c.NotificationTimeout <= 0 || c.NotificationTimeout > 10*time.Second {
		// Sent before the answer, once per repaired node: longer would hold up a node-wide repair.
		p.add("NOTIFICATION_TIMEOUT", "%s is outside (0s, 10s]", c.NotificationTimeout)
	}
}

// sourcePatternError returns why an ADH_ALLOWED_SOURCES entry is unusable, or "".
func sourcePatternError(p string) string {
	switch {
	case p == "":
		return "is empty"
	case strings.ContainsFunc(p, func(r rune) bool { return r <= ' ' || r == 0x7f }):
		return "contains a space or control character"
	case strings.Contains(strings.TrimSuffix(p, "*"), "*"):
		return "has a * that is not its last character (only a trailing * is a prefix match)"
	}
	return ""
}

// SourceAllowed reports whether a CloudEvent source matches one of patterns (see
// Config.AllowedSources); no patterns allow every source.
func SourceAllowed(source string, patterns []string) bool {
	if len(patterns) == 0 {
		return true
	}
	for _, p := range patterns {
		if prefix, ok := strings.CutSuffix(p, "*"); ok {
			if strings.HasPrefix(source, prefix) {
				return true
			}
		} else if source == p {
			return true
		}
	}
	return false
}

func cleanList(in []string) []string {
	var out []string
	for _, s := range in {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
