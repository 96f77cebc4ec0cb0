package frontend

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// apiError is a failure of one call, rendered as a gRPC status or an HTTP response.
type apiError struct {
	code       codes.Code
	msg        string
	field      string        // the offending attribute or parameter, for InvalidArgument
	retryAfter time.Duration // for ResourceExhausted
	httpCode   int           // overrides the mapping from code (413 for bodies)
}

func (e *apiError) Error() string { return e.msg }

func errorf(code codes.Code, format string, args ...any) *apiError {
	return &apiError{code: code, msg: fmt.Sprintf(format, args...)}
}

func fieldErr(field, format string, args ...any) *apiError {
	return &apiError{code: codes.InvalidArgument, field: field, msg: fmt.Sprintf(format, args...)}
}

// asAPI turns any error into an apiError: gRPC statuses from Open Match keep their code.
func asAPI(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	if s, ok := status.FromError(err); ok {
		return &apiError{code: s.Code(), msg: s.Message()}
	}
	return &apiError{code: codes.Internal, msg: err.Error()}
}

// grpcStatus renders e with BadRequest / RetryInfo details so gRPC clients can act on them.
func (e *apiError) grpcStatus() error {
	s := status.New(e.code, e.msg)
	var err error
	switch {
	case e.field != "":
		s, err = s.WithDetails(&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: e.field, Description: e.msg}}})
	case e.retryAfter > 0:
		s, err = s.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(e.retryAfter)})
	}
	if err != nil {
		return status.Error(e.code, e.msg)
	}
	return s.Err()
}

// httpStatus maps gRPC codes the way grpc-gateway does.
func httpStatus(c codes.Code) int {
	switch c {
	case codes.OK:
		return http.StatusOK
	case codes.InvalidArgument, codes.OutOfRange, codes.FailedPrecondition:
		return http.StatusBadRequest
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.NotFound:
		return http.StatusNotFound
	case codes.AlreadyExists, codes.Aborted:
		return http.StatusConflict
	case codes.ResourceExhausted:
		return http.StatusTooManyRequests
	case codes.Canceled:
		return 499
	case codes.DeadlineExceeded:
		return http.StatusGatewayTimeout
	case codes.Unavailable:
		return http.StatusServiceUnavailable
	case codes.Unimplemented:
		return http.StatusNotImplemented
	}
	return http.StatusInternalServerError
}

// retryAfterSeconds is the Retry-After header value: whole seconds, at least 1.
func retryAfterSeconds(d time.Duration) string {
	return strconv.Itoa(int(math.Max(1, math.Ceil(d.Seconds()))))
}
