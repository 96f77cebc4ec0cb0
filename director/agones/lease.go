package agones

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	coordinationv1 "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// ErrLostLease is returned by LeadWith when this replica stopped being the leader before ctx ended.
var ErrLostLease = errors.New("agones: lost the leader-election lease")

// LeadWith runs lead only while this replica holds the Lease cfg.LeaseName (client-go leader
// election); lead's context is cancelled when leadership is lost or ctx ends, and LeadWith returns
// after lead has returned. It returns ErrLostLease when leadership was lost while ctx was still
// live (the caller exits and is restarted as a follower), nil when ctx ended, or lead's error.
// The Lease is released on a clean stop so another replica takes over at once.
func (b *Backend) LeadWith(ctx context.Context, log *slog.Logger, lead func(ctx context.Context) error) error {
	if b.cfg.LeaseName == "" {
		return errors.New("agones: leader election needs --lease-name")
	}
	rc := rest.CopyConfig(b.rc)
	// JSON rather than client-go's protobuf default for built-in types: a Lease is tiny and every
	// API server speaks JSON.
	rc.ContentType, rc.AcceptContentTypes = "application/json", "application/json"
	cc, err := coordinationv1.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("agones: coordination client: %w", err)
	}
	id := b.cfg.identity()
	lock := &notingLock{Interface: &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Name: b.cfg.LeaseName, Namespace: b.cfg.Namespace},
		Client:     cc,
		LockConfig: resourcelock.ResourceLockConfig{Identity: id},
	}}
	var leadErr error
	done := make(chan struct{})
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   b.cfg.LeaseDuration,
		RenewDeadline:   b.cfg.RenewDeadline,
		RetryPeriod:     b.cfg.RetryPeriod,
		ReleaseOnCancel: true,
		Name:            "kumi-director",
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(lctx context.Context) {
				defer close(done)
				log.Info("leading", "lease", b.cfg.LeaseName, "identity", id)
				leadErr = lead(lctx)
			},
			OnStoppedLeading: func() { log.Info("not leading", "lease", b.cfg.LeaseName, "identity", id) },
			OnNewLeader: func(who string) {
				if who != id {
					log.Info("following", "leader", who)
				}
			},
		},
	})
	if err != nil {
		return fmt.Errorf("agones: leader election: %w", err)
	}
	le.Run(ctx)
	if !lock.acquired.Load() {
		return nil // ctx ended before we ever led
	}
	<-done
	if leadErr != nil {
		return leadErr
	}
	if ctx.Err() == nil {
		return ErrLostLease
	}
	return nil
}

// notingLock records whether this replica ever wrote itself as the holder: client-go starts
// OnStartedLeading in a goroutine exactly when that happened, so LeadWith knows whether to wait for
// it after Run returns.
type notingLock struct {
	resourcelock.Interface
	acquired atomic.Bool
}

func (l *notingLock) Create(ctx context.Context, r resourcelock.LeaderElectionRecord) error {
	err := l.Interface.Create(ctx, r)
	if err == nil && r.HolderIdentity == l.Identity() {
		l.acquired.Store(true)
	}
	return err
}

func (l *notingLock) Update(ctx context.Context, r resourcelock.LeaderElectionRecord) error {
	err := l.Interface.Update(ctx, r)
	if err == nil && r.HolderIdentity == l.Identity() {
		l.acquired.Store(true)
	}
	return err
}
