package scenario

import (
	"net/http"

	"function/config"
	"function/handlers"
	"function/internal/localcluster/apitap"
	"function/internal/wiring"
)

// InProcess is the function built in this process as function.Start builds it (config.Load,
// wiring.Build), its clients' every API call recorded by Tap: for the tests and benchmarks that
// count, time or interfere with the calls of one event.
type InProcess struct {
	Handler *handlers.Handler
	Config  *config.Config
	Tap     *apitap.Tap
}

// InProcessOptions say where the function reaches the cluster and how it differs from its
// defaults.
type InProcessOptions struct {
	// Kubeconfig reaches the API server (or a proxy in front of it).
	Kubeconfig string
	// Tune, when set, changes the configuration read from the environment (it is validated
	// afterwards).
	Tune func(*config.Config)
	// LogPath receives the function's log; LogLevel overrides the configured level.
	LogPath, LogLevel string
	// Before, when set, runs before each API call is sent (apitap.Tap.Before).
	Before func(*http.Request)
}

// NewInProcess builds the function. It does not contact the API server.
func NewInProcess(o InProcessOptions) (*InProcess, error) {
	cfg, err := config.Load()
	if err != nil {
		return nil, err
	}
	if o.Tune != nil {
		o.Tune(cfg)
		if err := cfg.Validate(); err != nil {
			return nil, err
		}
	}
	level := cfg.LogLevel
	if o.LogLevel != "" {
		level = o.LogLevel
	}
	log, err := wiring.NewLoggerTo(level, o.LogPath)
	if err != nil {
		return nil, err
	}
	tap := &apitap.Tap{Before: o.Before}
	p, err := wiring.Build(cfg, wiring.Options{Kubeconfig: o.Kubeconfig, Transport: tap.Wrap, Log: log})
	if err != nil {
		return nil, err
	}
	return &InProcess{Handler: p.Handler, Config: cfg, Tap: tap}, nil
}
