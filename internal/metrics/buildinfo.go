package metrics

import (
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// unknown stands for build information the binary does not carry (a build without VCS
// metadata, such as one from a source tarball or a container build context without .git).
const unknown = "unknown"

// newBuildInfo is argo_disruption_handler_build_info, always 1: its labels say which build runs,
// so that a dashboard can show the versions of a rollout and a query can join on them.
func newBuildInfo() prometheus.Gauge {
	version, revision, goVersion := buildLabels(debug.ReadBuildInfo())
	g := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Name: "build_info",
		Help:        "Always 1: the running build's main module version, VCS revision and Go version.",
		ConstLabels: prometheus.Labels{"version": version, "revision": revision, "go_version": goVersion}})
	g.Set(1)
	return g
}

// buildLabels reads the version, revision and Go version from what debug.ReadBuildInfo returned,
// "unknown" for what is absent.
func buildLabels(bi *debug.BuildInfo, ok bool) (version, revision, goVersion string) {
	version, revision, goVersion = unknown, unknown, runtime.Version()
	if !ok || bi == nil {
		return version, revision, goVersion
	}
	if bi.Main.Version != "" {
		version = bi.Main.Version
	}
	if bi.GoVersion != "" {
		goVersion = bi.GoVersion
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && s.Value != "" {
			revision = s.Value
		}
	}
	return version, revision, goVersion
}
