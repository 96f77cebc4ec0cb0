package tracing

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace/noop"
)

// Off, PublicHTTPHandler is the handler itself; on, the handler still reaches the connection
// through http.ResponseController (read deadlines bound slow bodies, flushes drive event streams)
// and the request's span is named for its route.
func TestPublicHTTPHandler(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/things", func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		if err := rc.SetReadDeadline(time.Now().Add(time.Minute)); err != nil {
			http.Error(w, "read deadline: "+err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusCreated)
		if err := rc.Flush(); err != nil {
			t.Errorf("flush: %v", err)
		}
	})
	if got := PublicHTTPHandler(mux); got != http.Handler(mux) {
		t.Fatalf("tracing off: PublicHTTPHandler wrapped the handler (%T)", got)
	}

	rec := tracetest.NewSpanRecorder()
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)))
	t.Cleanup(func() { otel.SetTracerProvider(noop.NewTracerProvider()) })
	srv := httptest.NewServer(PublicHTTPHandler(mux))
	defer srv.Close()
	resp, err := http.Post(srv.URL+"/v1/things", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	srv.Close() // waits for the handler, so its span has ended
	var names []string
	for _, s := range rec.Ended() {
		names = append(names, s.Name())
	}
	if len(names) != 1 || names[0] != "POST /v1/things" {
		t.Fatalf("spans %q, want one named for the route", names)
	}
}
