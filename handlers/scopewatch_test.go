package handlers

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"function/config"
	"function/eventing/eventingtest"
	"function/internal/apifake"
	"function/internal/metrics"
)

// A configuration that matches no workflow must not look like a quiet cluster: every event it
// passes over is counted by why, and once idleWarnAfter workflow pod events came with none in
// scope the function warns, once. One event in scope first, and it never does.
func TestOutOfScopeIsCountedAndWarned(t *testing.T) {
	for _, tc := range []struct {
		name     string
		scope    config.Scope
		firstIn  bool // one event in scope before the others
		why      string
		warnings int
	}{
		{"namespace list matches none: counted, warned once", config.Scope{Namespaces: []string{"argo-prod"}}, false, metrics.IgnoredNamespace, 1},
		{"another controller's instance ID: counted, warned once", config.Scope{ControllerInstanceID: "team-b"}, false, metrics.IgnoredInstance, 1},
		{"one event in scope before: counted, no warning", config.Scope{Namespaces: []string{"argo-prod"}}, true, metrics.IgnoredNamespace, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			core, logs := observer.New(zapcore.WarnLevel)
			rec := metrics.New()
			h := handlerOver(apifake.NewCluster(apifake.Workflow(), apifake.TaskResult("false")), func(o *Options) {
				o.Scope, o.Metrics, o.Log = tc.scope, rec, zap.New(core).Sugar()
			})
			ctx := context.Background()
			if tc.firstIn {
				h.inScope()
			}
			for range 2 * idleWarnAfter {
				if res := h.Handle(ctx, eventingtest.Load(t, "pod-delete-evicted.json")); res != nil {
					t.Fatal(res)
				}
			}
			scrape := httptest.NewRecorder()
			rec.Handler().ServeHTTP(scrape, httptest.NewRequest(http.MethodGet, "/metrics", nil))
			if want := fmt.Sprintf("%s_events_ignored_total{why=%q} %d\n", metrics.Namespace, tc.why, 2*idleWarnAfter); !strings.Contains(scrape.Body.String(), want) {
				t.Errorf("/metrics lacks %q", want)
			}
			warned := 0
			for _, e := range logs.All() {
				if strings.Contains(e.Message, "out of scope") {
					warned++
				}
			}
			if warned != tc.warnings {
				t.Errorf("%d out-of-scope warnings, want %d", warned, tc.warnings)
			}
		})
	}
}
