package nodeoperator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kumi-dev/kumi/nodeoperator/v1alpha1"
)

// TaintOutOfService is the non-graceful-shutdown taint: pods on the node are force-deleted and
// their volumes detached so they can run elsewhere.
const TaintOutOfService = "node.kubernetes.io/out-of-service"

// GameServerList is Agones' GameServer list kind, read as unstructured so kumi needs no Agones import.
var GameServerList = schema.GroupVersionKind{Group: "agones.dev", Version: "v1", Kind: "GameServerList"}

// EventRecorder is the events.k8s.io recorder shape (client-go tools/events).
type EventRecorder interface {
	Eventf(regarding runtime.Object, related runtime.Object, eventtype, reason, action, note string, args ...any)
}

// Deps are the operator's collaborators; tests pass fakes of the parts that cannot run here.
type Deps struct {
	Client   client.Client // reads and writes Kubernetes (a cached client in production)
	Cloud    Cloud
	Peers    Peers    // nil: tailnet signal not used (always "down", darkness rests on the kubelet)
	AuthKeys AuthKeys // nil: VMs get no tailnet key (their image must join another way)
	Director Drainer  // nil: no drain call; Allocated servers still block deletion until they end
	Events   EventRecorder
	Clock    clock.PassiveClock
	Metrics  *Metrics
	Log      *slog.Logger
}

// Operator runs the failover state machine over the on-prem pool. Sync is one level-triggered pass;
// everything it needs to continue after a restart is in the NodeFailover status, VM labels and
// bootstrap-token Secret labels.
type Operator struct {
	cfg     Config
	d       Deps
	classes map[string]VMTemplate
	caHash  string

	mu         sync.Mutex
	orphanSeen map[string]time.Time // VM name → first seen unclaimed (operator clock)
	removed    map[string]bool      // VMs deleted during the current pass (the pass's VM list predates them)
}

// New checks cfg and builds an Operator.
func New(cfg Config, d Deps) (*Operator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	classes, err := cfg.Classes()
	if err != nil {
		return nil, err
	}
	if d.Client == nil || d.Cloud == nil || d.Events == nil || d.Clock == nil || d.Metrics == nil || d.Log == nil {
		return nil, errors.New("nodeoperator: Deps need Client, Cloud, Events, Clock, Metrics and Log")
	}
	return &Operator{cfg: cfg, d: d, classes: classes, caHash: cfg.CACertHash, orphanSeen: map[string]time.Time{}, removed: map[string]bool{}}, nil
}

// observation is one node's two signals.
type observation struct {
	kubeletUp bool
	kubelet   string
	tailnetUp bool
	tailnet   string
}

func (o observation) dark(kubeletOnly bool) bool {
	if kubeletOnly {
		return !o.kubeletUp
	}
	return !o.kubeletUp && !o.tailnetUp
}

// Sync runs one pass over the whole pool. The breaker needs the pool-wide view, so the pass is
// not per node.
func (o *Operator) Sync(ctx context.Context) error {
	err := o.sync(ctx)
	if err != nil {
		o.d.Metrics.syncErrors.Inc()
	}
	return err
}

func (o *Operator) sync(ctx context.Context) error {
	o.mu.Lock()
	clear(o.removed)
	o.mu.Unlock()
	sel, err := labels.Parse(o.cfg.NodeSelector)
	if err != nil {
		return fmt.Errorf("node selector: %w", err)
	}
	var nodes corev1.NodeList
	if err := o.d.Client.List(ctx, &nodes, client.MatchingLabelsSelector{Selector: sel}); err != nil {
		return fmt.Errorf("list on-prem nodes: %w", err)
	}
	var nfl v1alpha1.NodeFailoverList
	if err := o.d.Client.List(ctx, &nfl); err != nil {
		return fmt.Errorf("list nodefailovers: %w", err)
	}
	nfs := map[string]*v1alpha1.NodeFailover{}
	for i := range nfl.Items {
		nfs[nfl.Items[i].Name] = &nfl.Items[i]
	}
	vmList, err := o.d.Cloud.List(ctx)
	if err != nil {
		return fmt.Errorf("list VMs: %w", err)
	}
	vms := map[string]VM{}
	for _, v := range vmList {
		vms[v.Name] = v
	}
	o.d.Metrics.vms.Set(float64(len(vms)))

	names := make([]string, 0, len(nodes.Items))
	for _, n := range nodes.Items {
		if n.Labels[LabelFallback] == "true" {
			continue // a fallback that kept the on-prem labels is not itself guarded
		}
		names = append(names, n.Name)
	}
	sort.Strings(names)
	byName := map[string]*corev1.Node{}
	for i := range nodes.Items {
		byName[nodes.Items[i].Name] = &nodes.Items[i]
	}
	peers := map[string]PeerState{}
	if o.d.Peers != nil && len(names) > 0 {
		peers = o.d.Peers.Check(ctx, names)
	}
	now := o.d.Clock.Now()
	obs := map[string]observation{}
	dark, kubeletOnly, tailnetOnly := 0, 0, 0
	for _, name := range names {
		ob := o.observe(ctx, byName[name], now)
		if o.d.Peers == nil {
			ob.tailnet = "tailnet signal disabled"
		} else {
			ps := peers[name]
			ob.tailnetUp, ob.tailnet = ps.Up, ps.Reason
		}
		obs[name] = ob
		switch {
		case ob.dark(o.cfg.KubeletOnly):
			dark++
		case !ob.kubeletUp:
			kubeletOnly++
		case !ob.tailnetUp && o.d.Peers != nil:
			tailnetOnly++
		}
	}
	breakerOpen := o.breakerOpen(dark, len(names))
	o.d.Metrics.dark.Set(float64(dark))
	o.d.Metrics.kubeletOnly.Set(float64(kubeletOnly))
	o.d.Metrics.tailnetOnly.Set(float64(tailnetOnly))
	o.d.Metrics.pool.Set(float64(len(names)))
	if breakerOpen {
		o.d.Metrics.breaker.Set(1)
	} else {
		o.d.Metrics.breaker.Set(0)
	}

	var errs []error
	for _, name := range names {
		nf := nfs[name]
		if nf == nil {
			nf, err = o.createRecord(ctx, byName[name])
			if err != nil {
				errs = append(errs, err)
				continue
			}
			nfs[name] = nf
		}
		if err := o.step(ctx, nf, byName[name], obs[name], breakerOpen, dark, len(names), vms); err != nil {
			errs = append(errs, fmt.Errorf("node %s: %w", name, err))
		}
	}
	// Records whose node left the selector (deleted or relabelled) still own their fallback: they
	// keep stepping as "node gone = dark" until their fallback is drained by max lifetime, so that
	// no VM is stranded; a record with nothing left is deleted.
	for name, nf := range nfs {
		if slices.Contains(names, name) {
			continue
		}
		if nf.Status.VMName == "" {
			if err := o.d.Client.Delete(ctx, nf); err != nil && !apierrors.IsNotFound(err) {
				errs = append(errs, err)
			}
			continue
		}
		ob := observation{kubelet: "node not found / not selected", tailnet: "node not found / not selected"}
		if err := o.step(ctx, nf, nil, ob, breakerOpen, dark, len(names), vms); err != nil {
			errs = append(errs, fmt.Errorf("node %s: %w", name, err))
		}
	}
	if err := o.sweepOrphans(ctx, nfs, vms, now); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// breakerOpen is Cluster API MachineHealthCheck's max-unhealthy: more than N dark, or more than X %
// of the pool. A single dark node never trips the percentage (a small pool would never fail over).
func (o *Operator) breakerOpen(dark, pool int) bool {
	if o.cfg.MaxUnhealthyCount > 0 && dark > o.cfg.MaxUnhealthyCount {
		return true
	}
	if o.cfg.MaxUnhealthyPct > 0 && dark > 1 && pool > 0 && float64(dark)*100 > o.cfg.MaxUnhealthyPct*float64(pool) {
		return true
	}
	return false
}

// observe reads the kubelet signal: Ready condition True and, when the node has a Lease, one
// renewed within LeaseStale.
func (o *Operator) observe(ctx context.Context, n *corev1.Node, now time.Time) observation {
	var ob observation
	ready := false
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			ready = c.Status == corev1.ConditionTrue
			ob.kubelet = "Ready=" + string(c.Status) + " " + c.Reason
		}
	}
	if ob.kubelet == "" {
		ob.kubelet = "no Ready condition"
	}
	if !ready {
		return ob
	}
	var lease coordinationv1.Lease
	err := o.d.Client.Get(ctx, client.ObjectKey{Namespace: corev1.NamespaceNodeLease, Name: n.Name}, &lease)
	switch {
	case apierrors.IsNotFound(err):
		ob.kubeletUp = true
	case err != nil:
		ob.kubeletUp = true // the Ready condition stands; a read error is not evidence of darkness
		ob.kubelet += " (lease unreadable: " + err.Error() + ")"
	case lease.Spec.RenewTime != nil && now.Sub(lease.Spec.RenewTime.Time) > o.cfg.LeaseStale:
		ob.kubelet = fmt.Sprintf("lease not renewed for %s", now.Sub(lease.Spec.RenewTime.Time).Round(time.Second))
	default:
		ob.kubeletUp = true
	}
	return ob
}

func (o *Operator) createRecord(ctx context.Context, n *corev1.Node) (*v1alpha1.NodeFailover, error) {
	nf := &v1alpha1.NodeFailover{
		ObjectMeta: metav1.ObjectMeta{Name: n.Name, Labels: map[string]string{LabelManagedBy: "kumi"}},
		Spec:       v1alpha1.NodeFailoverSpec{NodeName: n.Name, NodeClass: o.classOf(n)},
	}
	if err := o.d.Client.Create(ctx, nf); err != nil {
		if !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("create nodefailover %s: %w", n.Name, err)
		}
		if err := o.d.Client.Get(ctx, client.ObjectKey{Name: n.Name}, nf); err != nil {
			return nil, err
		}
	}
	o.log(n.Name).Info("guarding on-prem node", "class", nf.Spec.NodeClass)
	return nf, nil
}

func (o *Operator) classOf(n *corev1.Node) string {
	if c := n.Labels[o.cfg.ClassLabel]; c != "" {
		return c
	}
	return "default"
}

// eventf records an event on the NodeFailover, related to the on-prem Node when there is one.
func (o *Operator) eventf(nf *v1alpha1.NodeFailover, node *corev1.Node, typ, reason, action, note string, args ...any) {
	if node == nil {
		o.d.Events.Eventf(nf, nil, typ, reason, action, note, args...)
		return
	}
	o.d.Events.Eventf(nf, node, typ, reason, action, note, args...)
}

func (o *Operator) log(node string) *slog.Logger { return o.d.Log.With("node", node) }

func t(tm time.Time) *metav1.Time { mt := metav1.NewTime(tm); return &mt }

func setCond(nf *v1alpha1.NodeFailover, typ string, on bool, reason, msg string) bool {
	st := metav1.ConditionFalse
	if on {
		st = metav1.ConditionTrue
	}
	old := apimeta.FindStatusCondition(nf.Status.Conditions, typ)
	changed := old == nil || old.Status != st
	apimeta.SetStatusCondition(&nf.Status.Conditions, metav1.Condition{Type: typ, Status: st, Reason: reason,
		Message: msg, ObservedGeneration: nf.Generation})
	return changed && on
}

// step advances one node's state machine and writes its status if anything changed.
func (o *Operator) step(ctx context.Context, nf *v1alpha1.NodeFailover, node *corev1.Node, ob observation, breakerOpen bool, dark, pool int, vms map[string]VM) error {
	before := nf.DeepCopy()
	err := o.advance(ctx, nf, node, ob, breakerOpen, dark, pool, vms)
	if !reflect.DeepEqual(before.Status, nf.Status) {
		if uerr := o.d.Client.Status().Update(ctx, nf); uerr != nil {
			return errors.Join(err, fmt.Errorf("update status: %w", uerr))
		}
	}
	return err
}

func (o *Operator) advance(ctx context.Context, nf *v1alpha1.NodeFailover, node *corev1.Node, ob observation, breakerOpen bool, dark, pool int, vms map[string]VM) error {
	now := o.d.Clock.Now()
	log := o.log(nf.Name)
	isDark := ob.dark(o.cfg.KubeletOnly)
	st := &nf.Status
	if st.Phase == "" {
		st.Phase = v1alpha1.PhaseHealthy
	}
	if setCond(nf, v1alpha1.ConditionKubeletDown, !ob.kubeletUp, reasonOf(!ob.kubeletUp, "KubeletDown", "KubeletUp"), ob.kubelet) && !isDark {
		log.Warn("kubelet down but the tailnet peer answers: reported, no VM", "kubelet", ob.kubelet, "tailnet", ob.tailnet)
		o.eventf(nf, node, corev1.EventTypeWarning, "KubeletDown", "Observe", "kubelet down (%s) while the tailnet peer answers; no VM bought", ob.kubelet)
	}
	setCond(nf, v1alpha1.ConditionTailnetDown, !ob.tailnetUp, reasonOf(!ob.tailnetUp, "TailnetDown", "TailnetUp"), ob.tailnet)
	setCond(nf, v1alpha1.ConditionDark, isDark, reasonOf(isDark, "BothSignalsDown", "Serving"), "kubelet: "+ob.kubelet+"; tailnet: "+ob.tailnet)

	// The breaker condition is pool-wide but shown on every dark record that it holds back.
	if breakerOpen && isDark {
		if setCond(nf, v1alpha1.ConditionBreakerOpen, true, "TooManyDark",
			fmt.Sprintf("%d of %d on-prem nodes dark (max %d / %.0f%%): buying no VMs", dark, pool, o.cfg.MaxUnhealthyCount, o.cfg.MaxUnhealthyPct)) {
			log.Warn("breaker open: too many on-prem nodes dark at once; buying no VMs", "dark", dark, "pool", pool)
			o.eventf(nf, node, corev1.EventTypeWarning, "BreakerOpen", "Failover", "%d of %d on-prem nodes dark: no VMs bought", dark, pool)
		}
	} else {
		setCond(nf, v1alpha1.ConditionBreakerOpen, false, "WithinLimit", "")
	}

	switch st.Phase {
	case v1alpha1.PhaseHealthy:
		if isDark {
			st.Phase, st.DarkSince = v1alpha1.PhaseSuspect, t(now)
			st.Message = "both signals down; waiting the flap grace"
			log.Warn("node dark: both signals down; waiting the flap grace", "grace", o.cfg.FlapGrace, "kubelet", ob.kubelet, "tailnet", ob.tailnet)
			o.eventf(nf, node, corev1.EventTypeWarning, "Dark", "Observe", "kubelet: %s; tailnet: %s", ob.kubelet, ob.tailnet)
		} else if st.Tainted && node != nil {
			return o.untaint(ctx, nf, node)
		}
	case v1alpha1.PhaseSuspect:
		if !isDark {
			log.Info("node back inside the flap grace: no VM", "dark_for", now.Sub(st.DarkSince.Time).Round(time.Second))
			o.eventf(nf, node, corev1.EventTypeNormal, "Flapped", "Observe", "back after %s; no VM", now.Sub(st.DarkSince.Time).Round(time.Second))
			o.d.Metrics.failovers.WithLabelValues(OutcomeFlapped).Inc()
			st.Phase, st.DarkSince, st.Message = v1alpha1.PhaseHealthy, nil, "serving"
			if st.Tainted && node != nil {
				return o.untaint(ctx, nf, node)
			}
			return nil
		}
		if now.Sub(st.DarkSince.Time) < o.cfg.FlapGrace {
			return nil
		}
		if breakerOpen {
			if st.Message != "breaker open" {
				o.d.Metrics.failovers.WithLabelValues(OutcomeBreaker).Inc()
			}
			st.Message = "breaker open"
			return nil
		}
		return o.startFailover(ctx, nf, node, vms)
	case v1alpha1.PhaseProvisioning:
		if err := o.maybeTaint(ctx, nf, node, isDark, breakerOpen); err != nil {
			return err
		}
		if !isDark {
			return o.beginRecovery(ctx, nf, node, "on-prem node back before its fallback joined")
		}
		return o.provision(ctx, nf, node, vms)
	case v1alpha1.PhaseActive:
		if err := o.maybeTaint(ctx, nf, node, isDark, breakerOpen); err != nil {
			return err
		}
		if st.FailoverStartedAt != nil && now.Sub(st.FailoverStartedAt.Time) >= o.cfg.MaxLifetime {
			return o.beginRecovery(ctx, nf, node, "fallback reached its maximum lifetime")
		}
		if isDark {
			st.BackSince = nil
			return nil
		}
		if st.BackSince == nil {
			st.BackSince = t(now)
			log.Info("on-prem node back; waiting until it is stable", "stable", o.cfg.RecoveryStable)
		}
		if now.Sub(st.BackSince.Time) >= o.cfg.RecoveryStable {
			return o.beginRecovery(ctx, nf, node, "on-prem node back and stable")
		}
	case v1alpha1.PhaseRecovering:
		return o.recover(ctx, nf, node)
	case v1alpha1.PhaseFailed:
		if err := o.maybeTaint(ctx, nf, node, isDark, breakerOpen); err != nil {
			return err
		}
		if !isDark {
			log.Info("on-prem node back after a failed failover")
			st.Phase, st.DarkSince, st.Attempt, st.Message = v1alpha1.PhaseHealthy, nil, 0, "serving"
			if st.Tainted && node != nil {
				return o.untaint(ctx, nf, node)
			}
		}
	}
	return nil
}

func reasonOf(on bool, yes, no string) string {
	if on {
		return yes
	}
	return no
}

// maybeTaint puts the out-of-service taint on a node dark for TaintAfter (not while the breaker is
// open: a partition must not evict the whole pool either).
func (o *Operator) maybeTaint(ctx context.Context, nf *v1alpha1.NodeFailover, node *corev1.Node, isDark, breakerOpen bool) error {
	st := &nf.Status
	if !isDark || breakerOpen || st.Tainted || node == nil || st.DarkSince == nil {
		return nil
	}
	if o.d.Clock.Now().Sub(st.DarkSince.Time) < o.cfg.TaintAfter {
		return nil
	}
	patch := client.MergeFrom(node.DeepCopy())
	if !slices.ContainsFunc(node.Spec.Taints, func(tn corev1.Taint) bool { return tn.Key == TaintOutOfService }) {
		node.Spec.Taints = append(node.Spec.Taints, corev1.Taint{Key: TaintOutOfService, Value: "nodeshutdown", Effect: corev1.TaintEffectNoExecute})
		if err := o.d.Client.Patch(ctx, node, patch); err != nil {
			return fmt.Errorf("taint out-of-service: %w", err)
		}
	}
	st.Tainted = true
	setCond(nf, v1alpha1.ConditionOutOfService, true, "DarkTooLong", "tainted "+TaintOutOfService)
	o.log(nf.Name).Warn("node dark too long: tainted out-of-service so its pods are rescheduled", "dark_for", o.d.Clock.Now().Sub(st.DarkSince.Time).Round(time.Second))
	o.eventf(nf, node, corev1.EventTypeWarning, "OutOfService", "Taint", "dark for %s: tainted %s", o.cfg.TaintAfter, TaintOutOfService)
	return nil
}

func (o *Operator) untaint(ctx context.Context, nf *v1alpha1.NodeFailover, node *corev1.Node) error {
	patch := client.MergeFrom(node.DeepCopy())
	kept := slices.DeleteFunc(slices.Clone(node.Spec.Taints), func(tn corev1.Taint) bool { return tn.Key == TaintOutOfService })
	if len(kept) != len(node.Spec.Taints) {
		node.Spec.Taints = kept
		if err := o.d.Client.Patch(ctx, node, patch); err != nil {
			return fmt.Errorf("remove out-of-service taint: %w", err)
		}
	}
	nf.Status.Tainted = false
	setCond(nf, v1alpha1.ConditionOutOfService, false, "Back", "")
	o.log(nf.Name).Info("removed the out-of-service taint")
	o.eventf(nf, node, corev1.EventTypeNormal, "InService", "Untaint", "removed %s", TaintOutOfService)
	return nil
}

// startFailover records the intent (phase, VM name) before anything is bought, so a crash at
// any later point is resumed by adoption instead of a second VM.
func (o *Operator) startFailover(ctx context.Context, nf *v1alpha1.NodeFailover, node *corev1.Node, vms map[string]VM) error {
	st := &nf.Status
	now := o.d.Clock.Now()
	// An earlier operator may have bought a VM for this node and died before writing the status.
	attempt := 1
	for _, v := range vms {
		if v.Node == LabelValue(nf.Name) && v.Attempt >= attempt {
			attempt = v.Attempt
		}
	}
	st.Phase, st.Attempt, st.FailoverStartedAt = v1alpha1.PhaseProvisioning, attempt, t(now)
	st.VMName, st.VMZone, st.ProvisionStartedAt = VMName(nf.Name, attempt), o.template(nf).Zone, t(now)
	st.Message = "buying fallback VM " + st.VMName
	o.log(nf.Name).Warn("dark past the flap grace: failing over", "vm", st.VMName, "attempt", attempt, "dark_for", now.Sub(st.DarkSince.Time).Round(time.Second))
	if err := o.d.Client.Status().Update(ctx, nf); err != nil {
		return fmt.Errorf("record failover intent: %w", err)
	}
	return o.provision(ctx, nf, node, vms)
}

func (o *Operator) template(nf *v1alpha1.NodeFailover) VMTemplate {
	if tp, ok := o.classes[nf.Spec.NodeClass]; ok {
		return tp
	}
	return o.classes["default"]
}

// provision makes sure the VM exists (adopting it if it does), promotes the phase once its Node is
// Ready, and replaces it after the startup timeout.
func (o *Operator) provision(ctx context.Context, nf *v1alpha1.NodeFailover, node *corev1.Node, vms map[string]VM) error {
	st := &nf.Status
	now := o.d.Clock.Now()
	log := o.log(nf.Name)
	var fb corev1.Node
	err := o.d.Client.Get(ctx, client.ObjectKey{Name: st.VMName}, &fb)
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("get fallback node: %w", err)
	}
	if err == nil && nodeReady(&fb) {
		return o.joined(ctx, nf, node, &fb)
	}
	if now.Sub(st.ProvisionStartedAt.Time) >= o.cfg.StartupTimeout {
		log.Warn("fallback VM did not join within the startup timeout; replacing it", "vm", st.VMName, "timeout", o.cfg.StartupTimeout, "attempt", st.Attempt)
		o.eventf(nf, node, corev1.EventTypeWarning, "StartupTimeout", "Replace", "%s not Ready after %s", st.VMName, o.cfg.StartupTimeout)
		o.d.Metrics.failovers.WithLabelValues(OutcomeStartupTimeout).Inc()
		if err := o.removeFallback(ctx, nf, st.VMName, st.VMZone); err != nil {
			return err
		}
		if st.Attempt >= o.cfg.MaxAttempts {
			st.Phase, st.VMName, st.VMZone, st.ProvisionStartedAt = v1alpha1.PhaseFailed, "", "", nil
			st.Message = fmt.Sprintf("%d VMs failed to join; waiting for the on-prem node", st.Attempt)
			log.Error("failover failed: attempts exhausted", "attempts", st.Attempt)
			o.eventf(nf, node, corev1.EventTypeWarning, "FailoverFailed", "Failover", "%d VMs failed to join", st.Attempt)
			o.d.Metrics.failovers.WithLabelValues(OutcomeFailed).Inc()
			return nil
		}
		st.Attempt++
		st.VMName, st.ProvisionStartedAt = VMName(nf.Name, st.Attempt), t(now)
		st.Message = "replacing fallback VM: " + st.VMName
		if err := o.d.Client.Status().Update(ctx, nf); err != nil {
			return fmt.Errorf("record replacement intent: %w", err)
		}
	}
	if _, ok := vms[st.VMName]; ok {
		return nil // bought already (maybe by an earlier operator): adopt and wait for it to join
	}
	return o.buy(ctx, nf, node)
}

// buy issues fresh join credentials and creates the VM. "Already exists" is adoption.
func (o *Operator) buy(ctx context.Context, nf *v1alpha1.NodeFailover, node *corev1.Node) error {
	st := &nf.Status
	log := o.log(nf.Name)
	tpl := o.template(nf)
	if o.caHash == "" {
		h, err := caCertHash(ctx, o.d.Client)
		if err != nil {
			return err
		}
		o.caHash = h
	}
	// Credentials from an earlier try of this VM are revoked first: each VM gets exactly one.
	if err := o.revokeJoin(ctx, nf, st.VMName); err != nil {
		return err
	}
	now := o.d.Clock.Now()
	tok, err := createBootstrapToken(ctx, o.d.Client, st.VMName, nf.Name, now.Add(o.cfg.JoinTTL))
	if err != nil {
		return err
	}
	st.BootstrapTokenID = tok.ID
	var authKey string
	if o.d.AuthKeys != nil {
		id, key, err := o.d.AuthKeys.Create(ctx, "kumi fallback "+st.VMName, o.cfg.JoinTTL)
		if err != nil {
			return fmt.Errorf("mint tailnet auth key: %w", err)
		}
		st.AuthKeyID, authKey = id, key
	}
	if err := o.d.Client.Status().Update(ctx, nf); err != nil {
		return fmt.Errorf("record join credentials: %w", err)
	}
	script, err := renderStartupScript(scriptData{VM: st.VMName, Node: nf.Name, AuthKey: authKey,
		Tags: strings.Join(o.cfg.Tailnet.VMTags, ","), Labels: LabelFallback + "=true," + LabelFallbackFor + "=" + LabelValue(nf.Name),
		APIServer: o.cfg.APIServer, Token: tok.String(), CAHash: o.caHash})
	if err != nil {
		return err
	}
	if err := o.d.Cloud.Create(ctx, VMSpec{Name: st.VMName, Node: nf.Name, Attempt: st.Attempt, Template: tpl, StartupScript: script}); err != nil {
		log.Error("buying the fallback VM failed; retrying next pass", "vm", st.VMName, "err", err)
		o.eventf(nf, node, corev1.EventTypeWarning, "CreateFailed", "CreateVM", "%s: %v", st.VMName, err)
		o.d.Metrics.failovers.WithLabelValues(OutcomeCreateError).Inc()
		return err
	}
	log.Info("fallback VM created", "vm", st.VMName, "zone", tpl.Zone, "machine_type", tpl.MachineType, "attempt", st.Attempt)
	o.eventf(nf, node, corev1.EventTypeNormal, "VMCreated", "CreateVM", "%s in %s (%s), attempt %d", st.VMName, tpl.Zone, tpl.MachineType, st.Attempt)
	return nil
}

// revokeJoin deletes the bootstrap token(s) and tailnet auth key issued for vm.
func (o *Operator) revokeJoin(ctx context.Context, nf *v1alpha1.NodeFailover, vm string) error {
	if err := revokeBootstrapTokens(ctx, o.d.Client, vm); err != nil {
		return err
	}
	if nf.Status.BootstrapTokenID != "" {
		o.log(nf.Name).Info("bootstrap token revoked", "vm", vm, "token_id", nf.Status.BootstrapTokenID)
	}
	nf.Status.BootstrapTokenID = ""
	if nf.Status.AuthKeyID != "" && o.d.AuthKeys != nil {
		if err := o.d.AuthKeys.Revoke(ctx, nf.Status.AuthKeyID); err != nil {
			return fmt.Errorf("revoke tailnet auth key: %w", err)
		}
		o.log(nf.Name).Info("tailnet auth key revoked", "vm", vm)
	}
	nf.Status.AuthKeyID = ""
	return nil
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// joined: the fallback Node is Ready. Its join credentials are revoked at once, and it gets the
// on-prem node's labels so the same workloads schedule there.
func (o *Operator) joined(ctx context.Context, nf *v1alpha1.NodeFailover, node *corev1.Node, fb *corev1.Node) error {
	st := &nf.Status
	now := o.d.Clock.Now()
	if err := o.revokeJoin(ctx, nf, st.VMName); err != nil {
		return err
	}
	patch := client.MergeFrom(fb.DeepCopy())
	if fb.Labels == nil {
		fb.Labels = map[string]string{}
	}
	if node != nil {
		for k, v := range node.Labels {
			if k == corev1.LabelHostname || strings.HasPrefix(k, "node-role.kubernetes.io/") {
				continue
			}
			if _, set := fb.Labels[k]; !set {
				fb.Labels[k] = v
			}
		}
	}
	fb.Labels[LabelFallback], fb.Labels[LabelFallbackFor] = "true", LabelValue(nf.Name)
	if err := o.d.Client.Patch(ctx, fb, patch); err != nil {
		return fmt.Errorf("label fallback node: %w", err)
	}
	st.Phase, st.JoinedAt, st.BackSince = v1alpha1.PhaseActive, t(now), nil
	st.Message = "fallback " + st.VMName + " serving"
	setCond(nf, v1alpha1.ConditionFallbackReady, true, "Joined", st.VMName+" Ready")
	if st.DarkSince != nil {
		o.d.Metrics.replacement.Observe(now.Sub(st.DarkSince.Time).Seconds())
	}
	o.d.Metrics.failovers.WithLabelValues(OutcomeReplaced).Inc()
	o.log(nf.Name).Info("fallback node joined and Ready; join credentials revoked", "vm", st.VMName, "since_dark", now.Sub(st.DarkSince.Time).Round(time.Second))
	o.eventf(nf, node, corev1.EventTypeNormal, "FallbackReady", "Join", "%s Ready; bootstrap token and tailnet key revoked", st.VMName)
	return nil
}

func (o *Operator) beginRecovery(ctx context.Context, nf *v1alpha1.NodeFailover, node *corev1.Node, why string) error {
	nf.Status.Phase, nf.Status.Message, nf.Status.RecoveryReason = v1alpha1.PhaseRecovering, why, why
	o.log(nf.Name).Info("recovering: draining the fallback", "why", why, "vm", nf.Status.VMName)
	o.eventf(nf, node, corev1.EventTypeNormal, "Recovering", "Drain", "%s; draining %s", why, nf.Status.VMName)
	return o.recover(ctx, nf, node)
}

// recover untaints the on-prem node, cordons the fallback, asks the director to move the sessions
// of its game servers, deletes its idle game servers and removes it once no Allocated (or
// Reserved) game server is left. A failure to count is "still busy".
func (o *Operator) recover(ctx context.Context, nf *v1alpha1.NodeFailover, node *corev1.Node) error {
	st := &nf.Status
	log := o.log(nf.Name)
	if st.Tainted && node != nil && nodeReady(node) {
		if err := o.untaint(ctx, nf, node); err != nil {
			return err
		}
	}
	if err := o.revokeJoin(ctx, nf, st.VMName); err != nil {
		return err
	}
	var fb corev1.Node
	err := o.d.Client.Get(ctx, client.ObjectKey{Name: st.VMName}, &fb)
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("get fallback node: %w", err)
	}
	if err == nil && !fb.Spec.Unschedulable {
		patch := client.MergeFrom(fb.DeepCopy())
		fb.Spec.Unschedulable = true
		if err := o.d.Client.Patch(ctx, &fb, patch); err != nil {
			return fmt.Errorf("cordon fallback node: %w", err)
		}
		log.Info("fallback node cordoned", "vm", st.VMName)
	}
	gss, err := o.gameServersOn(ctx, st.VMName)
	if err != nil {
		setCond(nf, v1alpha1.ConditionWaitingSessions, true, "CountFailed", err.Error())
		return fmt.Errorf("count game servers on %s (kept as busy): %w", st.VMName, err)
	}
	busy := 0
	for i := range gss {
		gs := &gss[i]
		state, _, _ := unstructured.NestedString(gs.Object, "status", "state")
		switch state {
		case "Allocated", "Reserved":
			busy++
			if o.d.Director != nil && !slices.Contains(st.DrainRequested, gs.GetName()) {
				if err := o.d.Director.Drain(ctx, gs.GetName()); err != nil {
					log.Warn("director drain failed; retrying next pass", "gameserver", gs.GetName(), "err", err)
					continue
				}
				st.DrainRequested = append(st.DrainRequested, gs.GetName())
				log.Info("asked the director to drain a game server (its sessions move)", "gameserver", gs.GetName(), "vm", st.VMName)
			}
		default:
			if err := o.d.Client.Delete(ctx, gs); err != nil && !apierrors.IsNotFound(err) {
				return fmt.Errorf("delete idle game server %s: %w", gs.GetName(), err)
			}
			log.Info("deleted idle game server on the fallback", "gameserver", gs.GetName(), "state", state)
		}
	}
	if busy > 0 {
		if setCond(nf, v1alpha1.ConditionWaitingSessions, true, "AllocatedGameServers", fmt.Sprintf("%d Allocated game servers on %s", busy, st.VMName)) {
			log.Info("fallback kept while Allocated game servers run there", "allocated", busy, "vm", st.VMName)
			o.eventf(nf, node, corev1.EventTypeNormal, "WaitingForSessions", "Drain", "%d Allocated game servers on %s", busy, st.VMName)
		}
		st.Message = fmt.Sprintf("waiting for %d Allocated game servers on %s", busy, st.VMName)
		return nil
	}
	setCond(nf, v1alpha1.ConditionWaitingSessions, false, "Empty", "")
	if err := o.removeFallback(ctx, nf, st.VMName, st.VMZone); err != nil {
		return err
	}
	outcome := OutcomeRecovered
	if strings.Contains(st.RecoveryReason, "lifetime") {
		outcome = OutcomeLifetime
	}
	o.d.Metrics.failovers.WithLabelValues(outcome).Inc()
	log.Info("fallback removed; node back to healthy", "vm", st.VMName, "outcome", outcome)
	o.eventf(nf, node, corev1.EventTypeNormal, "FallbackRemoved", "Delete", "%s deleted (%s)", st.VMName, outcome)
	*st = v1alpha1.NodeFailoverStatus{Phase: v1alpha1.PhaseHealthy, Tainted: st.Tainted, Message: "serving", Conditions: st.Conditions}
	setCond(nf, v1alpha1.ConditionFallbackReady, false, "Removed", "")
	return nil
}

// gameServersOn lists Agones GameServers whose status.nodeName is node.
func (o *Operator) gameServersOn(ctx context.Context, node string) ([]unstructured.Unstructured, error) {
	var l unstructured.UnstructuredList
	l.SetGroupVersionKind(GameServerList)
	if err := o.d.Client.List(ctx, &l); err != nil {
		return nil, err
	}
	var out []unstructured.Unstructured
	for _, gs := range l.Items {
		if n, _, _ := unstructured.NestedString(gs.Object, "status", "nodeName"); n == node {
			out = append(out, gs)
		}
	}
	return out, nil
}

// ErrBusy refuses to delete a VM whose Node hosts Allocated or Reserved game servers.
var ErrBusy = errors.New("fallback hosts Allocated game servers")

// removeFallback is the only path that deletes a VM. It re-counts the game servers on the VM's
// Node right before deleting and refuses (ErrBusy) when any is Allocated or Reserved, or when the
// count fails; then it deletes the Node object, the VM (404 = done) and the join credentials.
func (o *Operator) removeFallback(ctx context.Context, nf *v1alpha1.NodeFailover, vm, zone string) error {
	if vm == "" {
		return nil
	}
	if err := o.guardBusy(ctx, vm); err != nil {
		return err
	}
	if err := o.revokeJoin(ctx, nf, vm); err != nil {
		return err
	}
	if err := o.d.Client.Delete(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: vm}}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete fallback node %s: %w", vm, err)
	}
	if zone == "" {
		zone = o.template(nf).Zone
	}
	if err := o.d.Cloud.Delete(ctx, zone, vm); err != nil {
		return fmt.Errorf("delete VM %s: %w", vm, err)
	}
	o.mu.Lock()
	o.removed[vm] = true
	o.mu.Unlock()
	o.log(nf.Name).Info("fallback VM deleted", "vm", vm, "zone", zone)
	return nil
}

func (o *Operator) guardBusy(ctx context.Context, vm string) error {
	gss, err := o.gameServersOn(ctx, vm)
	if err != nil {
		return fmt.Errorf("%w: %s: counting failed: %v", ErrBusy, vm, err)
	}
	for _, gs := range gss {
		if s, _, _ := unstructured.NestedString(gs.Object, "status", "state"); s == "Allocated" || s == "Reserved" {
			return fmt.Errorf("%w: %s: %s/%s is %s", ErrBusy, vm, gs.GetNamespace(), gs.GetName(), s)
		}
	}
	return nil
}

// sweepOrphans deletes managed VMs that no NodeFailover claims once they have been seen unclaimed
// for OrphanGrace (timed on the operator's clock, so a restart only makes it wait longer).
func (o *Operator) sweepOrphans(ctx context.Context, nfs map[string]*v1alpha1.NodeFailover, vms map[string]VM, now time.Time) error {
	claimed := map[string]bool{}
	for _, nf := range nfs {
		if nf.Status.VMName != "" {
			claimed[nf.Status.VMName] = true
		}
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	for name := range o.orphanSeen {
		if _, ok := vms[name]; !ok || claimed[name] {
			delete(o.orphanSeen, name)
		}
	}
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(vms)) {
		v := vms[name]
		if claimed[name] || o.removed[name] {
			continue
		}
		first, seen := o.orphanSeen[name]
		if !seen {
			o.orphanSeen[name] = now
			o.d.Log.Warn("unclaimed managed VM; deleting it after the orphan grace", "node", v.Node, "vm", name, "grace", o.cfg.OrphanGrace)
			continue
		}
		if now.Sub(first) < o.cfg.OrphanGrace {
			continue
		}
		if err := o.guardBusy(ctx, name); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := revokeBootstrapTokens(ctx, o.d.Client, name); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := o.d.Client.Delete(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, err)
			continue
		}
		if err := o.d.Cloud.Delete(ctx, v.Zone, name); err != nil {
			errs = append(errs, err)
			continue
		}
		delete(o.orphanSeen, name)
		o.d.Metrics.failovers.WithLabelValues(OutcomeOrphanSwept).Inc()
		o.d.Log.Warn("orphan VM swept", "node", v.Node, "vm", name)
	}
	return errors.Join(errs...)
}
