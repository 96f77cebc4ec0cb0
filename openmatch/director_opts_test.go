package openmatch

import (
	"github.com/kumi-dev/kumi/internal/omwire"
	"google.golang.org/grpc"
)

// directorCallOptions are the call options director/match.go passes to FetchMatches (its
// decoder), so BenchmarkFetchMatchesLatency1kKumi's caller decodes matches as the director does.
func directorCallOptions() []grpc.CallOption {
	return []grpc.CallOption{grpc.ForceCodecV2(omwire.NewCodec(nil))}
}
