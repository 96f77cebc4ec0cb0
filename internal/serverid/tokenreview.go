package serverid

import (
	"context"
	"fmt"
	"slices"
	"strings"

	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// DefaultAudience is the audience of the projected ServiceAccount token a game server presents
// (install/helm mounts one with it): a token meant for another service is refused.
const DefaultAudience = "kumi-director"

// labelGameServer is the label Agones puts on a GameServer's pod, naming the GameServer.
const labelGameServer = "agones.dev/gameserver"

// TokenReview verifies a projected ServiceAccount token with the Kubernetes TokenReview API and
// binds it to a GameServer: the token must be bound to a pod (kubelet's projected tokens are),
// that pod must still exist with the same UID, and its agones.dev/gameserver label must name the
// server claimed. A token for pod A therefore never registers server B. The director needs RBAC
// create on tokenreviews and get on pods.
type TokenReview struct {
	Kube kubernetes.Interface
	// Audience the token must be issued for; "" means DefaultAudience.
	Audience string
}

// Extra keys the API server sets for a pod-bound ServiceAccount token.
const (
	extraPodName = "authentication.kubernetes.io/pod-name"
	extraPodUID  = "authentication.kubernetes.io/pod-uid"
)

// VerifyBootstrap implements Verifier.
func (tr TokenReview) VerifyBootstrap(ctx context.Context, server, proof string) error {
	aud := tr.Audience
	if aud == "" {
		aud = DefaultAudience
	}
	rev, err := tr.Kube.AuthenticationV1().TokenReviews().Create(ctx, &authnv1.TokenReview{Spec: authnv1.TokenReviewSpec{Token: proof, Audiences: []string{aud}}}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("serverid: TokenReview: %w", err)
	}
	st := rev.Status
	if !st.Authenticated {
		return fmt.Errorf("%w: Kubernetes did not authenticate the token: %s", ErrNotProven, st.Error)
	}
	if !slices.Contains(st.Audiences, aud) {
		return fmt.Errorf("%w: token audiences %v, want %q", ErrNotProven, st.Audiences, aud)
	}
	// system:serviceaccount:NAMESPACE:NAME
	parts := strings.Split(st.User.Username, ":")
	if len(parts) != 4 || parts[0] != "system" || parts[1] != "serviceaccount" {
		return fmt.Errorf("%w: %q is not a ServiceAccount", ErrNotProven, st.User.Username)
	}
	ns := parts[2]
	pods, uids := st.User.Extra[extraPodName], st.User.Extra[extraPodUID]
	if len(pods) != 1 || len(uids) != 1 {
		return fmt.Errorf("%w: the token is not bound to a pod (use a projected ServiceAccount token)", ErrNotProven)
	}
	pod, err := tr.Kube.CoreV1().Pods(ns).Get(ctx, pods[0], metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("%w: pod %s/%s of the token: %w", ErrNotProven, ns, pods[0], err)
	}
	if string(pod.UID) != uids[0] {
		return fmt.Errorf("%w: pod %s/%s was replaced since the token was issued", ErrNotProven, ns, pods[0])
	}
	if gs := pod.Labels[labelGameServer]; gs != server {
		return fmt.Errorf("%w: the token's pod %s/%s is GameServer %q, not %q", ErrNotProven, ns, pods[0], gs, server)
	}
	return nil
}
