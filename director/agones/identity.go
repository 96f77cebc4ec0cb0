package agones

import (
	"context"
	"fmt"

	"k8s.io/client-go/kubernetes"

	"github.com/kumi-dev/kumi/internal/serverid"
)

// VerifyBootstrap implements serverid.Verifier, so a director with this backend lets its
// GameServers register: the proof is the pod's projected ServiceAccount token (audience
// serverid.DefaultAudience), checked with TokenReview and bound to the GameServer's pod. The
// director's ServiceAccount needs create on tokenreviews and get on pods (install/helm).
func (b *Backend) VerifyBootstrap(ctx context.Context, server, proof string) error {
	// client-go shares the transport of equal configs, so a client per (rare) registration is cheap.
	kube, err := kubernetes.NewForConfig(b.rc)
	if err != nil {
		return fmt.Errorf("agones: %w", err)
	}
	return serverid.TokenReview{Kube: kube}.VerifyBootstrap(ctx, server, proof)
}
