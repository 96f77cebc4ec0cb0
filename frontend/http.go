package frontend

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/kumi-dev/kumi/api/client"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// httpAPI serves the same calls as grpcAPI as HTTP/JSON (see api/client/client.proto).
type httpAPI struct {
	s       *service
	g       *gate
	stop    context.Context // ends long-polls and event streams on shutdown
	maxBody int64
}

var (
	jsonOut = protojson.MarshalOptions{UseProtoNames: true}
	jsonIn  = protojson.UnmarshalOptions{}
)

func (h *httpAPI) routes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/tickets", h.create)
	mux.HandleFunc("GET /v1/tickets/{id}", h.get)
	mux.HandleFunc("GET /v1/tickets/{id}/events", h.events)
	mux.HandleFunc("DELETE /v1/tickets/{id}", h.cancel)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	return mux
}

// errorBody is the JSON error shape: {"error": {"code": 400, "status": "INVALID_ARGUMENT", ...}}.
type errorBody struct {
	Error struct {
		Code    int    `json:"code"`
		Status  string `json:"status"`
		Message string `json:"message"`
		Field   string `json:"field,omitempty"`
	} `json:"error"`
}

// statusName is the canonical upper-snake name of c ("INVALID_ARGUMENT"), as in google.rpc.Code.
func statusName(c codes.Code) string {
	switch c {
	case codes.OK:
		return "OK"
	case codes.Canceled:
		return "CANCELLED"
	}
	var b strings.Builder
	for i, r := range c.String() {
		if i > 0 && unicode.IsUpper(r) {
			b.WriteByte('_')
		}
		b.WriteRune(unicode.ToUpper(r))
	}
	return b.String()
}

func (h *httpAPI) fail(w http.ResponseWriter, method string, start time.Time, err error) {
	ae := asAPI(err)
	code := httpStatus(ae.code)
	if ae.httpCode != 0 {
		code = ae.httpCode
	}
	var body errorBody
	body.Error.Code, body.Error.Status, body.Error.Message, body.Error.Field = code, statusName(ae.code), ae.msg, ae.field
	if ae.retryAfter > 0 {
		w.Header().Set("Retry-After", retryAfterSeconds(ae.retryAfter))
	}
	if ae.code == codes.Unauthenticated {
		w.Header().Set("WWW-Authenticate", `Bearer realm="kumi", error="invalid_token"`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(body)
	h.record(method, start, ae.code)
}

func (h *httpAPI) record(method string, start time.Time, c codes.Code) {
	h.s.m.requests.WithLabelValues("http", method, c.String()).Inc()
	if method != "WatchAssignment" {
		h.s.m.latency.WithLabelValues("http", method).Observe(time.Since(start).Seconds())
	}
}

func (h *httpAPI) reply(w http.ResponseWriter, method string, start time.Time, code int, m proto.Message) {
	b, err := jsonOut.Marshal(m)
	if err != nil {
		h.fail(w, method, start, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(b)
	h.record(method, start, codes.OK)
}

func (h *httpAPI) admit(w http.ResponseWriter, r *http.Request, method string, start time.Time) (caller, bool) {
	c, err := h.g.admit(r.Header.Get("Authorization"), r.RemoteAddr)
	if err != nil {
		h.fail(w, method, start, err)
		return caller{}, false
	}
	return c, true
}

func (h *httpAPI) create(w http.ResponseWriter, r *http.Request) {
	const method = "CreateTicket"
	start := time.Now()
	// The size check comes before authentication so an oversized body is never read.
	if r.ContentLength > h.maxBody {
		h.fail(w, method, start, tooLarge(h.maxBody))
		return
	}
	c, ok := h.admit(w, r, method, start)
	if !ok {
		return
	}
	// A body trickled in slowly would pin the connection; the server-wide ReadTimeout is not used
	// because it would also cut long-polls and event streams.
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(bodyReadTimeout))
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.maxBody))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		h.fail(w, method, start, tooLarge(h.maxBody))
		return
	case err != nil:
		h.fail(w, method, start, errorf(codes.InvalidArgument, "reading the request body: %v", err))
		return
	}
	req := &client.CreateTicketRequest{}
	if len(body) > 0 {
		if err := jsonIn.Unmarshal(body, req); err != nil {
			h.fail(w, method, start, fieldErr("body", "request body is not a CreateTicketRequest (want {\"attributes\": {\"name\": value, ...}}): %v", err))
			return
		}
	}
	t, created, err := h.s.create(r.Context(), c, req)
	if err != nil {
		h.fail(w, method, start, err)
		return
	}
	code := http.StatusOK
	if created {
		code = http.StatusCreated
	}
	h.reply(w, method, start, code, t)
}

// bodyReadTimeout bounds reading one request body.
const bodyReadTimeout = 10 * time.Second

func tooLarge(limit int64) *apiError {
	return &apiError{code: codes.ResourceExhausted, msg: "request body larger than " + strconv.FormatInt(limit, 10) + " bytes (max-body-bytes)", field: "body", httpCode: http.StatusRequestEntityTooLarge}
}

// parseWait reads ?wait= as a Go duration ("30s") or whole seconds ("30"), capped at max.
func parseWait(s string, max time.Duration) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		n, nerr := strconv.Atoi(s)
		if nerr != nil {
			return 0, fieldErr("wait", "wait %q is not a duration (e.g. 30s) or a number of seconds", s)
		}
		d = time.Duration(n) * time.Second
	}
	if d < 0 {
		return 0, fieldErr("wait", "wait %q must not be negative", s)
	}
	return min(d, max), nil
}

func (h *httpAPI) get(w http.ResponseWriter, r *http.Request) {
	const method = "GetTicket"
	start := time.Now()
	wait, err := parseWait(r.URL.Query().Get("wait"), h.s.cfg.MaxWait)
	if err != nil {
		h.fail(w, method, start, err)
		return
	}
	c, ok := h.admit(w, r, method, start)
	if !ok {
		return
	}
	ctx, cancel := mergeCancel(r.Context(), h.stop)
	defer cancel()
	t, err := h.s.longPoll(ctx, c.player, r.PathValue("id"), wait)
	if err != nil {
		if h.stop.Err() != nil {
			err = errorf(codes.Unavailable, "frontend is shutting down; retry")
		}
		h.fail(w, method, start, err)
		return
	}
	h.reply(w, method, start, http.StatusOK, t)
}

func (h *httpAPI) cancel(w http.ResponseWriter, r *http.Request) {
	const method = "CancelTicket"
	start := time.Now()
	c, ok := h.admit(w, r, method, start)
	if !ok {
		return
	}
	if err := h.s.cancel(r.Context(), c.player, r.PathValue("id")); err != nil {
		h.fail(w, method, start, err)
		return
	}
	h.reply(w, method, start, http.StatusOK, &client.CancelTicketResponse{})
}

// events is WatchAssignment as server-sent events: a "ticket" event now and one when assigned,
// then the stream ends; failures after the start are an "error" event with the errorBody JSON.
func (h *httpAPI) events(w http.ResponseWriter, r *http.Request) {
	const method = "WatchAssignment"
	start := time.Now()
	c, ok := h.admit(w, r, method, start)
	if !ok {
		return
	}
	ctx, cancel := mergeCancel(r.Context(), h.stop)
	defer cancel()
	rc := http.NewResponseController(w)
	// Events are written by this goroutine; heartbeats by a ticker goroutine started with the
	// stream. mu orders their writes; the ticker is stopped before the handler returns.
	var mu sync.Mutex
	write := func(b []byte) error {
		mu.Lock()
		defer mu.Unlock()
		if _, err := w.Write(b); err != nil {
			return err
		}
		return rc.Flush()
	}
	var beatStop chan struct{}
	var beatDone sync.WaitGroup
	send := func(t *client.Ticket) error {
		b, err := jsonOut.Marshal(t)
		if err != nil {
			return err
		}
		if beatStop == nil {
			w.Header().Set("Content-Type", "text/event-stream")
			w.Header().Set("Cache-Control", "no-cache")
			w.Header().Set("X-Accel-Buffering", "no")
			w.WriteHeader(http.StatusOK)
			beatStop = make(chan struct{})
			beatDone.Add(1)
			go func() {
				defer beatDone.Done()
				tick := time.NewTicker(h.s.cfg.SSEHeartbeat)
				defer tick.Stop()
				for {
					select {
					case <-beatStop:
						return
					case <-tick.C:
						if write([]byte(": keep-alive\n\n")) != nil {
							return
						}
					}
				}
			}()
		}
		return write(append(append([]byte("event: ticket\ndata: "), b...), '\n', '\n'))
	}
	err := h.s.watch(ctx, c.player, r.PathValue("id"), send)
	if err != nil && h.stop.Err() != nil {
		err = errorf(codes.Unavailable, "frontend is shutting down; watch again")
	}
	if beatStop == nil {
		if err == nil {
			err = errorf(codes.Internal, "watch ended without an event")
		}
		h.fail(w, method, start, err)
		return
	}
	if err != nil && r.Context().Err() == nil {
		ae := asAPI(err)
		var body errorBody
		body.Error.Code, body.Error.Status, body.Error.Message = httpStatus(ae.code), statusName(ae.code), ae.msg
		b, _ := json.Marshal(body)
		write(append(append([]byte("event: error\ndata: "), b...), '\n', '\n'))
	}
	close(beatStop)
	beatDone.Wait()
	code := codes.OK
	if err != nil {
		code = asAPI(err).code
	}
	h.record(method, start, code)
}

// mergeCancel is a context ended by a or b.
func mergeCancel(a, b context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(a)
	stop := context.AfterFunc(b, cancel)
	return ctx, func() { stop(); cancel() }
}
