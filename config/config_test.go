package config

import (
	"strings"
	"testing"
	"time"
)

func TestLoad(t *testing.T) {
	cases := []struct {
		name string
		env  map[string]string
		want func(*Config) bool
		err  []string // every substring must be in the error
	}{
		{"defaults", nil, func(c *Config) bool {
			return !c.DryRun && c.MaxBodyBytes == 4<<20 && c.EventTimeout == 10*time.Second && c.NodeErrorGrace == time.Minute &&
				len(c.Namespaces) == 0 && len(c.ExcludedNamespaces) == 1 && c.KubeQPS == 100 && c.KubeBurst == 200
		}, nil},
		{"lists are trimmed", map[string]string{"ADH_NAMESPACES": " argo, ml-jobs ,", "ADH_DRY_RUN": "true"}, func(c *Config) bool {
			return c.DryRun && len(c.Namespaces) == 2 && c.Namespaces[1] == "ml-jobs"
		}, nil},
		{"allowed sources: exact and prefix entries, trimmed", map[string]string{"ADH_ALLOWED_SOURCES": " https://10.96.0.1:443 , arn:aws:sqs:eu-west-1:123456789012:* ,"}, func(c *Config) bool {
			return len(c.AllowedSources) == 2 && c.AllowedSources[1] == "arn:aws:sqs:eu-west-1:123456789012:*" &&
				SourceAllowed("https://10.96.0.1:443", c.AllowedSources) && SourceAllowed("arn:aws:sqs:eu-west-1:123456789012:adh", c.AllowedSources) &&
				!SourceAllowed("https://10.96.0.1:4430", c.AllowedSources) && !SourceAllowed("https://10.96.0.1", c.AllowedSources) &&
				!SourceAllowed("", c.AllowedSources)
		}, nil},
		{"no allowed sources: every source", nil, func(c *Config) bool {
			return len(c.AllowedSources) == 0 && SourceAllowed("anything", c.AllowedSources) && SourceAllowed("", c.AllowedSources)
		}, nil},
		{"allowed source with an inner *", map[string]string{"ADH_ALLOWED_SOURCES": "https://*.example.com"}, nil, []string{"ADH_ALLOWED_SOURCES", "trailing *"}},
		{"allowed source with a space", map[string]string{"ADH_ALLOWED_SOURCES": "https://a b"}, nil, []string{"ADH_ALLOWED_SOURCES", "space"}},
		{"unparsable duration", map[string]string{"ADH_EVENT_TIMEOUT": "soon"}, nil, []string{"EVENT_TIMEOUT"}},
		{"sweep defaults", nil, func(c *Config) bool {
			return c.SweepBudget == 20*time.Second && c.SweepGrace == 2*time.Minute && c.SweepPageSize == 100 && c.StateNamespace == "argo-disruption-handler"
		}, nil},
		{"sweep settings out of bounds", map[string]string{
			"ADH_SWEEP_BUDGET": "29s", "ADH_SWEEP_GRACE": "5s", "ADH_SWEEP_PAGE_SIZE": "0", "ADH_STATE_NAMESPACE": "Not_A_NS",
		}, nil, []string{"ADH_SWEEP_BUDGET", "ADH_SWEEP_GRACE", "ADH_SWEEP_PAGE_SIZE", "ADH_STATE_NAMESPACE"}},
		{"notifications: off by default, 2s timeout", nil, func(c *Config) bool {
			return c.NotificationSink == "" && c.NotificationTimeout == 2*time.Second
		}, nil},
		{"notification sink and timeout", map[string]string{
			"ADH_NOTIFICATION_SINK": " http://broker-ingress.knative-eventing.svc.cluster.local/argo-disruption-handler/default ", "ADH_NOTIFICATION_TIMEOUT": "500ms",
		}, func(c *Config) bool {
			return c.NotificationSink == "http://broker-ingress.knative-eventing.svc.cluster.local/argo-disruption-handler/default" && c.NotificationTimeout == 500*time.Millisecond
		}, nil},
		{"notification sink not an http URL", map[string]string{"ADH_NOTIFICATION_SINK": "broker-ingress.knative-eventing.svc"}, nil, []string{"ADH_NOTIFICATION_SINK", "absolute http"}},
		{"notification sink of another scheme", map[string]string{"ADH_NOTIFICATION_SINK": "ftp://sink.example/x"}, nil, []string{"ADH_NOTIFICATION_SINK"}},
		{"notification timeout out of bounds", map[string]string{"ADH_NOTIFICATION_TIMEOUT": "30s"}, nil, []string{"ADH_NOTIFICATION_TIMEOUT", "(0s, 10s]"}},
		{"notification timeout zero", map[string]string{"ADH_NOTIFICATION_TIMEOUT": "0s"}, nil, []string{"ADH_NOTIFICATION_TIMEOUT"}},
		{"every bad setting named at once", map[string]string{
			"ADH_NAMESPACES": "Argo_NS", "ADH_EVENT_TIMEOUT": "40s", "ADH_NODE_ERROR_GRACE": "2s",
			"ADH_LOG_LEVEL": "loud", "ADH_MAX_BODY_BYTES": "10", "ADH_INSTANCE_ID": "a b",
		}, nil, []string{"ADH_NAMESPACES", "ADH_EVENT_TIMEOUT", "ADH_NODE_ERROR_GRACE", "ADH_LOG_LEVEL", "ADH_MAX_BODY_BYTES", "ADH_INSTANCE_ID"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			cfg, err := Load()
			if c.err != nil {
				if err == nil {
					t.Fatal("no error")
				}
				for _, s := range c.err {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not name %s", err, s)
					}
				}
				return
			}
			if err != nil || !c.want(cfg) {
				t.Fatalf("cfg %+v, err %v", cfg, err)
			}
		})
	}
}
