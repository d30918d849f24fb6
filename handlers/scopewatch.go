package handlers

import (
	"context"
	"errors"
	"sync/atomic"

	"go.uber.org/zap"
	"knative.dev/pkg/logging"

	"function/config"
	"function/internal/metrics"
)

// idleWarnAfter is how many out-of-scope workflow pod events, with none in scope, make the
// function say it is doing nothing: a wrong namespace list or controller instance ID otherwise
// only shows as "ignored" at debug level.
const idleWarnAfter = 50

// scopeWatch counts the workflow pod events in and out of scope since the start, to warn once
// when every one of them was out of scope. Safe for concurrent use.
type scopeWatch struct {
	in, out atomic.Int64
	warned  atomic.Bool
}

// ignore logs and counts an event that needs nothing; why is one of metrics' Ignored* reasons.
func (h *Handler) ignore(ctx context.Context, why, detail string) {
	logging.FromContext(ctx).Debugw("ignored", zap.String("why", detail))
	h.o.Metrics.EventIgnored(why)
}

// outOfScope ignores a workflow pod event for its scope error and, once idleWarnAfter of them
// came with none in scope, warns that the function acts on nothing.
func (h *Handler) outOfScope(ctx context.Context, err error) {
	why := metrics.IgnoredNamespace
	if errors.Is(err, config.ErrOtherInstance) {
		why = metrics.IgnoredInstance
	}
	h.ignore(ctx, why, err.Error())
	out := h.scope.out.Add(1)
	if out >= idleWarnAfter && h.scope.in.Load() == 0 && h.scope.warned.CompareAndSwap(false, true) {
		s := h.o.Scope
		logging.FromContext(ctx).Warnw("every workflow pod event so far was out of scope: the function acts on nothing; check ADH_NAMESPACES, ADH_EXCLUDED_NAMESPACES and ADH_INSTANCE_ID against the workflows' namespaces and their controller's instance ID",
			zap.Int64("outOfScope", out), zap.Strings("namespaces", s.Namespaces), zap.Strings("excludedNamespaces", s.Excluded),
			zap.String("controllerInstanceID", s.ControllerInstanceID), zap.Error(err))
	}
}

// inScope notes a workflow pod event in scope.
func (h *Handler) inScope() { h.scope.in.Add(1) }
