package gameserver

import (
	"fmt"
	"slices"
	"testing"

	"github.com/kumi-dev/kumi/internal/tracing/tracingtest"
)

// BenchmarkRelayTracing is BenchmarkRelay's v2 batched relay (a child process; forwarded
// datagrams per CPU-second of that process) with tracing off — no OTEL_* endpoint, as by
// default — and on, configured by the OTEL_* variables as `kumi gameserver` reads them
// (internal/tracing.Setup): parentbased_traceidratio at 1 %, spans exported by OTLP/gRPC to an
// in-process receiver in this (load-generating) process. The crowd's tokens then carry a
// traceparent as a director's do with tracing on, 1 in 100 sampled: the JOINs are the spans (the
// relay's sampler follows the token's flag); the forwarding path has none. Off and on alternate for -relay.rounds rounds; "ratios" reports the
// median over rounds of on/off.
//
//	go test -run '^$' -bench BenchmarkRelayTracing -benchtime 1x ./gameserver
func BenchmarkRelayTracing(b *testing.B) {
	signer, jwks := benchSigner(b)
	recv, endpoint := tracingtest.Start(b)
	perCPU := map[string]float64{} // "variant/round" → forwarded datagrams per relay CPU-second
	for round := range *benchRounds {
		for _, v := range []struct {
			name string
			tr   *relayTracing
		}{
			{"off", nil},
			{"on-1%", &relayTracing{env: tracingtest.Env(endpoint, 0.01), sampledEvery: 100}},
		} {
			key := fmt.Sprintf("%s/r%d", v.name, round)
			runRelayContender(b, fmt.Sprintf("%s/%dx%d/%.0fpps", key, *benchSessions, *benchMembers, *benchRate), "v2", IOBatch, signer, jwks, v.tr,
				func(x float64) { perCPU[key] = x })
		}
	}
	b.Run("ratios", func(b *testing.B) {
		r := make([]float64, 0, *benchRounds)
		for round := range *benchRounds {
			off, on := perCPU[fmt.Sprintf("off/r%d", round)], perCPU[fmt.Sprintf("on-1%%/r%d", round)]
			if off == 0 || on == 0 {
				b.Fatalf("round %d is missing a variant (run the whole benchmark, not a sub-benchmark)", round)
			}
			r = append(r, on/off)
		}
		slices.Sort(r)
		b.Logf("on/off by round (sorted): %.3f; %d spans exported (the sampled JOINs, retransmissions included)", r, recv.Spans())
		b.ReportMetric(r[len(r)/2], "on/off")
	})
}

// relayTracing turns tracing on in a relay contender: env for its process, and the crowd's
// tokens carry traceparents, one in sampledEvery sampled.
type relayTracing struct {
	env          []string
	sampledEvery int
}
