package serverid

import (
	"context"
	"errors"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/kumi-dev/kumi/internal/kubetest"
)

// TestTokenReview registers with real projected-style tokens: the real kube-apiserver (with the
// ServiceAccount issuer and signing key envtest configures) issues pod-bound tokens through
// TokenRequest and answers TokenReview. Agones' controllers are not running: the pods are created
// as Agones would, named after their GameServer and labelled agones.dev/gameserver.
func TestTokenReview(t *testing.T) {
	env := kubetest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const ns = "default"
	kube := env.Kube
	if _, err := kube.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "gameserver"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := func(name, gs string) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{}},
			Spec: corev1.PodSpec{ServiceAccountName: "gameserver", Containers: []corev1.Container{{Name: "gs", Image: "kumi"}}}}
		if gs != "" {
			p.Labels[labelGameServer] = gs
		}
		p, err := kube.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	token := func(p *corev1.Pod, aud string) string {
		tr := &authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{Audiences: []string{aud}, ExpirationSeconds: ptr.To[int64](600)}}
		if p != nil {
			tr.Spec.BoundObjectRef = &authnv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: p.Name, UID: p.UID}
		}
		got, err := kube.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "gameserver", tr, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return got.Status.Token
	}
	a, b := pod("gs-a", "gs-a"), pod("gs-b", "gs-b")
	plain := pod("not-a-gameserver", "")
	tokA, tokB := token(a, DefaultAudience), token(b, DefaultAudience)
	tokOtherAud := token(a, "https://kubernetes.default.svc")
	tokUnbound := token(nil, DefaultAudience)
	tokPlain := token(plain, DefaultAudience)
	// A pod deleted and created again under the same name is another pod: its old token is void.
	gone := pod("gs-c", "gs-c")
	tokGone := token(gone, DefaultAudience)
	if err := kube.CoreV1().Pods(ns).Delete(ctx, "gs-c", metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
		t.Fatal(err)
	}

	v := TokenReview{Kube: kube}
	for _, tc := range []struct {
		name, server, proof string
		ok                  bool
	}{
		{"own pod's token", "gs-a", tokA, true},
		{"other own pod's token", "gs-b", tokB, true},
		{"pod A's token claiming server B", "gs-b", tokA, false},
		{"pod B's token claiming server A", "gs-a", tokB, false},
		{"token for another audience", "gs-a", tokOtherAud, false},
		{"token bound to no pod", "gs-a", tokUnbound, false},
		{"token of a pod that is no GameServer's", "not-a-gameserver", tokPlain, false},
		{"token of a deleted pod", "gs-c", tokGone, false},
		{"not a token", "gs-a", "garbage", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := v.VerifyBootstrap(ctx, tc.server, tc.proof)
			if (err == nil) != tc.ok {
				t.Fatalf("VerifyBootstrap(%s) = %v, want ok=%v", tc.server, err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrNotProven) {
				t.Fatalf("refusal %v does not wrap ErrNotProven", err)
			}
		})
	}
}
