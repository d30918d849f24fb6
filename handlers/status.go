package handlers

import (
	"context"
	"errors"
	"net/http"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"function/eventing"
	"function/internal/repair"
	"function/internal/senderauth"
)

// StatusOf maps an error to the HTTP status answered to the sender, and thereby to whether the
// Knative broker retries (it retries 5xx, 404, 408, 409, 429; other 4xx go to the dead-letter
// sink). Bad input is a 4xx, which no retry can fix; anything the API server or the network may
// get over is a 503, so the broker re-delivers and the idempotent repair finishes.
func StatusOf(err error) int {
	var apiStatus apierrors.APIStatus
	switch {
	case err == nil:
		return http.StatusOK
	case errors.Is(err, senderauth.ErrUnauthenticated):
		return http.StatusUnauthorized
	case errors.Is(err, senderauth.ErrForbidden):
		return http.StatusForbidden
	case errors.Is(err, errNotCloudEvent):
		return http.StatusUnsupportedMediaType
	case errors.Is(err, errBadEnvelope):
		return http.StatusBadRequest
	case errors.Is(err, ErrSourceNotAllowed):
		// Not retried by the broker; dead-lettered with the reason (see ErrSourceNotAllowed).
		return http.StatusForbidden
	case errors.Is(err, ErrTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, eventing.ErrMalformed), errors.Is(err, eventing.ErrUnknownType), errors.Is(err, ErrNotWorkflowPod):
		return http.StatusBadRequest
	case errors.Is(err, repair.ErrConflictsExhausted), errors.Is(err, ErrUnfinished),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return http.StatusServiceUnavailable
	case errors.As(err, &apiStatus):
		switch {
		case apierrors.IsTooManyRequests(err), apierrors.IsServerTimeout(err), apierrors.IsTimeout(err),
			apierrors.IsServiceUnavailable(err), apierrors.IsInternalError(err), apierrors.IsConflict(err),
			apierrors.IsUnexpectedServerError(err), apiStatus.Status().Code >= 500:
			return http.StatusServiceUnavailable
		}
		// Forbidden, Invalid, BadRequest: the deployment is wrong (RBAC, CRD version). A 500 is
		// retried by the broker for a while and lands in the dead-letter sink with the reason.
		return http.StatusInternalServerError
	}
	// Transport errors (connection refused, TLS, DNS, EOF) reach us as plain errors.
	return http.StatusServiceUnavailable
}
