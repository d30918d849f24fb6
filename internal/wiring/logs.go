// The function's structured logger (zap, JSON, the shape knative.dev/pkg/logging uses in Knative
// components), so logs from a scaled-from-zero pod are read like any other's.

package wiring

import (
	"fmt"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// NewLogger returns a JSON logger at level ("debug", "info", "warn", "error") writing to stderr.
func NewLogger(level string) (*zap.SugaredLogger, error) { return NewLoggerTo(level, "stderr") }

// NewLoggerTo is NewLogger writing to path (a file, or "stderr"): an in-process function under test logs
// as the deployed one does.
func NewLoggerTo(level, path string) (*zap.SugaredLogger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("log level %q: %w", level, err)
	}
	cfg := zap.NewProductionConfig()
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	cfg.EncoderConfig.TimeKey = "timestamp"
	cfg.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	cfg.Sampling = nil // a burst of disruptions is exactly when every line matters
	cfg.OutputPaths, cfg.ErrorOutputPaths = []string{path}, []string{path}
	l, err := cfg.Build()
	if err != nil {
		return nil, fmt.Errorf("logger writing to %s: %w", path, err)
	}
	return l.Sugar().Named("argo-disruption-handler"), nil
}
