package frontend

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc/metadata"

	"github.com/kumi-dev/kumi/api/client"
	"github.com/kumi-dev/kumi/internal/tracing"
	"github.com/kumi-dev/kumi/internal/tracing/tracingtest"
)

var tracingRounds = flag.Int("tracing.rounds", 3, "alternating off/on rounds of BenchmarkCreateTicketTracing")

// BenchmarkCreateTicketTracing is CreateTicket over gRPC through the frontend into the embedded
// core (BenchmarkCreateTicket's via=frontend, 64 clients) with tracing off — the default: no
// OTEL_* endpoint — and on as production configures it, by the OTEL_* variables read by
// internal/tracing.Setup: parentbased_traceidratio at 1 %, spans exported by OTLP/gRPC to an
// in-process receiver (internal/tracing/tracingtest). Off and on alternate for -tracing.rounds
// rounds so the shared machine's load hits both alike; "ratios" reports the median over rounds of
// on/off tickets per CPU-second. "off-path" times the tracing calls CreateTicket still makes when
// off (span start, attribute, traceparent lookup, end, on the no-op provider) and reports their
// share of a ticket's CPU (from the off rounds): 1 − that share is off against no tracing code.
//
//	go test -run '^$' -bench BenchmarkCreateTicketTracing -benchtime 3000x ./frontend
func BenchmarkCreateTicketTracing(b *testing.B) {
	const conc = 64
	recv, endpoint := tracingtest.Start(b)
	perCPU := map[string]float64{} // "variant/round" → tickets per CPU-second (the last run)
	variants := []string{"off", "on-1%"}
	for round := range *tracingRounds {
		for _, v := range variants {
			name := fmt.Sprintf("%s/r%d", v, round)
			b.Run(name, func(b *testing.B) {
				if v == "on-1%" {
					startTracing(b, endpoint, 0.01)
				}
				if got := tracing.On(); got != (v != "off") {
					b.Fatalf("%s: tracing.On() = %v", v, got)
				}
				// One load generator on 127.0.0.1: no per-source limit.
				e := newEnv(b, oneSource)
				ctxs := make([]context.Context, b.N)
				for i := range ctxs {
					tok, err := e.signer.PlayerToken("bench-"+strconv.Itoa(i), time.Hour)
					if err != nil {
						b.Fatal(err)
					}
					ctxs[i] = metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok)
				}
				req := &client.CreateTicketRequest{Attributes: attrs("mode", "duel", "region", "eu", "skill", 1200.0)}
				perCPU[name] = runConcurrent(b, conc, func(i int) error { _, err := e.api.CreateTicket(ctxs[i], req); return err })
			})
		}
	}
	b.Run("off-path", func(b *testing.B) {
		if tracing.On() {
			b.Fatal("tracing still on")
		}
		tr := tracing.Tracer("frontend")
		b.ResetTimer()
		for range b.N {
			ctx, span := tr.Start(context.Background(), "frontend.CreateTicket", trace.WithAttributes(tracing.PlayerID.String("p")))
			if tp := tracing.TraceParent(ctx); tp != "" {
				b.Fatal("traceparent with tracing off")
			}
			span.SetAttributes(tracing.TicketID.String("t"))
			span.End()
		}
		b.StopTimer()
		var off []float64
		for round := range *tracingRounds {
			off = append(off, perCPU[fmt.Sprintf("off/r%d", round)])
		}
		if slices.Contains(off, 0) {
			return // run alone: no ticket CPU to compare with
		}
		slices.Sort(off)
		nsPerTicket := 1e9 / off[len(off)/2]
		offPath := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
		b.ReportMetric(1-offPath/nsPerTicket, "off/no-tracing-code")
	})
	b.Run("ratios", func(b *testing.B) {
		r := make([]float64, 0, *tracingRounds)
		for round := range *tracingRounds {
			off, on := perCPU[fmt.Sprintf("off/r%d", round)], perCPU[fmt.Sprintf("on-1%%/r%d", round)]
			if off == 0 || on == 0 {
				b.Fatalf("round %d is missing a variant (run the whole benchmark, not a sub-benchmark)", round)
			}
			r = append(r, on/off)
		}
		slices.Sort(r)
		b.Logf("on/off tickets per CPU-second by round (sorted): %.3f; %d spans exported at 1 %%", r, recv.Spans())
		b.ReportMetric(r[len(r)/2], "on/off")
	})
}

// startTracing turns tracing on for the rest of b as a kumi process would from its environment
// (tracingtest.Env, then tracing.Setup), and back off at its end.
func startTracing(b *testing.B, endpoint string, ratio float64) {
	b.Helper()
	for _, kv := range tracingtest.Env(endpoint, ratio) {
		k, v, _ := strings.Cut(kv, "=")
		b.Setenv(k, v)
	}
	shutdown, err := tracing.Setup(context.Background(), slog.New(slog.DiscardHandler), "kumi-frontend")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := shutdown(ctx); err != nil {
			b.Error(err)
		}
		otel.SetTracerProvider(noop.NewTracerProvider())
		otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator())
	})
}
