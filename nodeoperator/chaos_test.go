package nodeoperator

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kumi-dev/kumi/nodeoperator/internal/gcefake"
	"github.com/kumi-dev/kumi/nodeoperator/v1alpha1"
)

// The chaos table: each test is one outage shape from the issue, driven against the Kubernetes
// API, the GCE fake and the loopback tailnet, with the operator's clock stepped by hand.

func TestChaosFlappingNodeBuysNoVM(t *testing.T) {
	e := newEnv(t, 4, nil)
	e.sync()
	e.wantPhase("onprem-1", v1alpha1.PhaseHealthy)
	e.dark("onprem-1")
	e.sync()
	e.wantPhase("onprem-1", v1alpha1.PhaseSuspect)
	e.clk.Step(10 * time.Second)
	e.sync()
	e.wantPhase("onprem-1", v1alpha1.PhaseSuspect)
	e.back("onprem-1")
	e.sync()
	e.wantPhase("onprem-1", v1alpha1.PhaseHealthy)
	e.clk.Step(time.Minute)
	e.sync()
	if n := e.gce.Inserts(); n != 0 {
		t.Fatalf("flapping node bought %d VMs, want 0", n)
	}
	if e.failovers(OutcomeFlapped) != 1 || e.events.count("onprem-1", "Flapped") != 1 {
		t.Fatalf("flap not reported: metric %v, events %v", e.failovers(OutcomeFlapped), e.events.events)
	}
}

func TestChaosLongOutage(t *testing.T) {
	e := newEnv(t, 4, nil)
	e.dark("onprem-0")
	e.sync()
	e.clk.Step(e.cfg.FlapGrace - time.Second)
	e.sync()
	if e.gce.Inserts() != 0 {
		t.Fatal("VM bought inside the flap grace")
	}
	e.clk.Step(time.Second)
	e.sync()
	e.wantPhase("onprem-0", v1alpha1.PhaseProvisioning)
	e.sync() // a second pass adopts, never buys again
	if n := e.gce.Inserts(); n != 1 {
		t.Fatalf("inserts = %d, want exactly 1", n)
	}
	nf := e.nf("onprem-0")
	vm := nf.Status.VMName
	labels, raw := e.gce.Instance(testZone, vm)
	if labels[VMLabelManagedBy] != "kumi" || labels[VMLabelNode] != "onprem-0" {
		t.Fatalf("VM labels %v", labels)
	}
	if amf, _ := raw["advancedMachineFeatures"].(map[string]any); amf["enableNestedVirtualization"] != true {
		t.Fatalf("nested virtualization not requested: %v", raw["advancedMachineFeatures"])
	}
	script := startupScriptOf(raw)
	if !strings.Contains(script, "--token '"+nf.Status.BootstrapTokenID+".") || !strings.Contains(script, "--discovery-token-ca-cert-hash 'sha256:") {
		t.Fatalf("startup script does not carry the bootstrap token and CA hash:\n%s", script)
	}
	if e.keys.liveKeys() != 1 {
		t.Fatalf("live tailnet auth keys = %d, want 1 while the VM joins", e.keys.liveKeys())
	}

	e.clk.Step(2 * time.Minute)
	e.join(vm)
	e.sync()
	e.wantPhase("onprem-0", v1alpha1.PhaseActive)
	if n := e.bootstrapSecrets(vm); n != 0 {
		t.Fatalf("bootstrap token not revoked after join: %d Secrets", n)
	}
	if e.keys.liveKeys() != 0 {
		t.Fatal("tailnet auth key not revoked after join")
	}
	var fb corev1.Node
	if err := e.kube.Get(e.ctx, clientKey(vm), &fb); err != nil || fb.Labels["kumi.dev/pool"] != "games" || fb.Labels[LabelFallbackFor] != "onprem-0" {
		t.Fatalf("fallback node labels %v (%v): want the on-prem labels plus fallback-for", fb.Labels, err)
	}
	if e.hasTaint("onprem-0") {
		t.Fatal("tainted before 300 s")
	}
	e.clk.Step(e.cfg.TaintAfter - e.cfg.FlapGrace - 2*time.Minute)
	e.sync()
	if !e.hasTaint("onprem-0") {
		t.Fatal("not tainted out-of-service after 300 s dark")
	}
	if e.gce.Inserts() != 1 {
		t.Fatalf("inserts = %d, want 1", e.gce.Inserts())
	}
	var h dto.Metric
	if err := e.metrics.replacement.Write(&h); err != nil || h.GetHistogram().GetSampleCount() != 1 || h.GetHistogram().GetSampleSum() != 150 {
		t.Fatalf("time-to-replacement: %v %v, want one observation of 150 s", h.GetHistogram(), err)
	}

	// On-prem comes back: stable for RecoveryStable, then the fallback (empty) is removed.
	e.back("onprem-0")
	e.sync()
	e.wantPhase("onprem-0", v1alpha1.PhaseActive)
	e.clk.Step(e.cfg.RecoveryStable)
	e.sync()
	e.wantPhase("onprem-0", v1alpha1.PhaseHealthy)
	if e.hasTaint("onprem-0") || e.nodeExists(vm) || len(e.gce.Instances()) != 0 {
		t.Fatalf("after recovery: tainted=%v fallback node=%v VMs=%v", e.hasTaint("onprem-0"), e.nodeExists(vm), e.gce.Instances())
	}
	if e.failovers(OutcomeRecovered) != 1 {
		t.Fatal("recovery not counted")
	}
}

func TestChaosOperatorKilledMidFailover(t *testing.T) {
	t.Run("after the VM was recorded", func(t *testing.T) {
		e := newEnv(t, 4, nil)
		e.dark("onprem-2")
		e.sync()
		e.clk.Step(e.cfg.FlapGrace)
		e.sync()
		vm := e.nf("onprem-2").Status.VMName
		e.restart()
		e.sync()
		e.sync()
		e.join(vm)
		e.sync()
		e.wantPhase("onprem-2", v1alpha1.PhaseActive)
		if n := e.gce.Inserts(); n != 1 {
			t.Fatalf("inserts = %d after restart, want 1", n)
		}
	})
	t.Run("VM bought but the status write lost", func(t *testing.T) {
		e := newEnv(t, 4, nil)
		e.dark("onprem-2")
		e.sync()
		// The earlier operator created the VM, then died before recording it.
		e.gce.Put(testZone, VMName("onprem-2", 1), map[string]string{VMLabelManagedBy: "kumi", VMLabelNode: "onprem-2", VMLabelAttempt: "1"})
		e.restart()
		e.clk.Step(e.cfg.FlapGrace)
		e.sync()
		e.wantPhase("onprem-2", v1alpha1.PhaseProvisioning)
		if got := e.nf("onprem-2").Status.VMName; got != VMName("onprem-2", 1) {
			t.Fatalf("adopted %q", got)
		}
		if n := e.gce.Inserts(); n != 0 {
			t.Fatalf("inserts = %d, want 0 (adopted)", n)
		}
		e.sync()
		if len(e.gce.Instances()) != 1 {
			t.Fatalf("VMs %v", e.gce.Instances())
		}
	})
}

func TestChaosCreateFailsThreeTimesThenSucceeds(t *testing.T) {
	e := newEnv(t, 4, nil)
	e.gce.Fail(gcefake.Fault{Method: "POST", Code: 429, Reason: "rateLimitExceeded"},
		gcefake.Fault{Method: "POST", Code: 503, Reason: "backendError"},
		gcefake.Fault{Method: "POST", Code: 403, Reason: "quotaExceeded"})
	e.dark("onprem-3")
	e.sync()
	e.clk.Step(e.cfg.FlapGrace)
	e.sync()
	posts := 0
	for _, c := range e.gce.Calls() {
		if c.Method == "POST" && strings.HasSuffix(c.Path, "/instances") {
			posts++
		}
	}
	if posts != 4 || e.gce.Inserts() != 1 {
		t.Fatalf("insert calls = %d (created %d), want 4 calls and exactly 1 VM", posts, e.gce.Inserts())
	}
	e.wantPhase("onprem-3", v1alpha1.PhaseProvisioning)
}

func TestChaosCreateRetriesExhaustedThenNextPass(t *testing.T) {
	e := newEnv(t, 4, func(c *Config) { c.RetrySteps = 2 })
	e.gce.Fail(gcefake.Fault{Method: "POST", Code: 500, Reason: "backendError"}, gcefake.Fault{Method: "POST", Code: 500, Reason: "backendError"})
	e.dark("onprem-3")
	e.sync()
	e.clk.Step(e.cfg.FlapGrace)
	if err := e.op.Sync(e.ctx); err == nil {
		t.Fatal("want the pass to report the failed create")
	}
	if e.failovers(OutcomeCreateError) != 1 || e.events.count("onprem-3", "CreateFailed") != 1 {
		t.Fatal("create failure not reported")
	}
	e.sync()
	if e.gce.Inserts() != 1 {
		t.Fatalf("inserts = %d, want 1", e.gce.Inserts())
	}
	if e.bootstrapSecrets(e.nf("onprem-3").Status.VMName) != 1 {
		t.Fatal("want exactly one live bootstrap token for the VM")
	}
}

func TestChaosStartupTimeoutReplaces(t *testing.T) {
	e := newEnv(t, 4, func(c *Config) { c.MaxAttempts = 2 })
	e.dark("onprem-0")
	e.sync()
	e.clk.Step(e.cfg.FlapGrace)
	e.sync()
	first := e.nf("onprem-0").Status.VMName
	e.clk.Step(e.cfg.StartupTimeout)
	e.sync()
	nf := e.nf("onprem-0")
	if nf.Status.Phase != v1alpha1.PhaseProvisioning || nf.Status.Attempt != 2 || nf.Status.VMName == first {
		t.Fatalf("after a startup timeout: %+v", nf.Status)
	}
	if got := e.gce.Instances(); !slices.Equal(got, []string{nf.Status.VMName}) {
		t.Fatalf("VMs %v, want only the replacement", got)
	}
	if e.bootstrapSecrets(first) != 0 || e.keys.liveKeys() != 1 {
		t.Fatal("the first VM's join credentials were not revoked")
	}
	e.clk.Step(e.cfg.StartupTimeout)
	e.sync()
	e.wantPhase("onprem-0", v1alpha1.PhaseFailed)
	if len(e.gce.Instances()) != 0 || e.gce.Inserts() != 2 || e.keys.liveKeys() != 0 {
		t.Fatalf("after attempts ran out: VMs %v, inserts %d, live keys %d", e.gce.Instances(), e.gce.Inserts(), e.keys.liveKeys())
	}
	e.clk.Step(time.Hour)
	e.sync()
	if e.gce.Inserts() != 2 {
		t.Fatal("a Failed node bought another VM")
	}
	e.back("onprem-0")
	e.sync()
	e.wantPhase("onprem-0", v1alpha1.PhaseHealthy)
}

func TestChaosBreakerOpens(t *testing.T) {
	e := newEnv(t, 4, func(c *Config) { c.MaxUnhealthyPct = 40 })
	e.dark("onprem-0", "onprem-1", "onprem-2")
	e.sync()
	e.clk.Step(e.cfg.TaintAfter + time.Minute)
	e.sync()
	e.sync()
	if n := e.gce.Inserts(); n != 0 {
		t.Fatalf("breaker open but %d VMs bought", n)
	}
	for _, n := range []string{"onprem-0", "onprem-1", "onprem-2"} {
		nf := e.nf(n)
		if !apimeta.IsStatusConditionTrue(nf.Status.Conditions, v1alpha1.ConditionBreakerOpen) {
			t.Fatalf("%s: no BreakerOpen condition: %+v", n, nf.Status.Conditions)
		}
		if e.events.count(n, "BreakerOpen") != 1 {
			t.Fatalf("%s: want one BreakerOpen event: %v", n, e.events.events)
		}
		if e.hasTaint(n) {
			t.Fatalf("%s tainted while the breaker is open", n)
		}
	}
	if testutil.ToFloat64(e.metrics.breaker) != 1 || testutil.ToFloat64(e.metrics.dark) != 3 {
		t.Fatal("breaker metrics")
	}
	// Two come back: one dark node of four is within the limit, so it fails over.
	e.back("onprem-1", "onprem-2")
	e.sync()
	if testutil.ToFloat64(e.metrics.breaker) != 0 || e.gce.Inserts() != 1 {
		t.Fatalf("after the partition healed: breaker %v, inserts %d", testutil.ToFloat64(e.metrics.breaker), e.gce.Inserts())
	}
}

func TestChaosRecoveryKeepsVMWithAllocatedGameServer(t *testing.T) {
	e := newEnv(t, 4, nil)
	vm := e.failover("onprem-0")
	e.addGS("gs-busy", vm, "Allocated")
	e.addGS("gs-idle", vm, "Ready")
	e.addGS("gs-elsewhere", "onprem-1", "Allocated")
	e.back("onprem-0")
	e.sync()
	e.clk.Step(e.cfg.RecoveryStable)
	e.sync()
	e.wantPhase("onprem-0", v1alpha1.PhaseRecovering)
	if e.gsExists("gs-idle") || !e.gsExists("gs-busy") || !e.gsExists("gs-elsewhere") {
		t.Fatal("recovery must delete the fallback's Ready game servers and only those")
	}
	var fb corev1.Node
	if err := e.kube.Get(e.ctx, clientKey(vm), &fb); err != nil || !fb.Spec.Unschedulable {
		t.Fatalf("fallback not cordoned: %v", err)
	}
	if got := e.director.list(); !slices.Equal(got, []string{"gs-busy"}) {
		t.Fatalf("director drains %v, want [gs-busy]", got)
	}
	// Hours pass, max lifetime included: the VM stays while the session runs.
	for range 3 {
		e.clk.Step(e.cfg.MaxLifetime)
		e.sync()
	}
	if len(e.gce.Instances()) != 1 || !apimeta.IsStatusConditionTrue(e.nf("onprem-0").Status.Conditions, v1alpha1.ConditionWaitingSessions) {
		t.Fatalf("VM removed (or not reported waiting) while Allocated: %v", e.gce.Instances())
	}
	if got := e.director.list(); len(got) != 1 {
		t.Fatalf("drain asked %d times, want once", len(got))
	}
	// The session moved: the server goes back to Ready; the next pass deletes it and the VM.
	e.setGSStatus("gs-busy", vm, "Ready")
	e.sync()
	e.wantPhase("onprem-0", v1alpha1.PhaseHealthy)
	if len(e.gce.Instances()) != 0 || e.nodeExists(vm) || e.gsExists("gs-busy") {
		t.Fatalf("fallback not removed after its last session: VMs %v", e.gce.Instances())
	}
}

func TestChaosMaxLifetimeDrainsWithMoves(t *testing.T) {
	e := newEnv(t, 4, nil)
	vm := e.failover("onprem-0")
	e.addGS("gs-busy", vm, "Allocated")
	e.clk.Step(e.cfg.MaxLifetime)
	e.sync()
	e.wantPhase("onprem-0", v1alpha1.PhaseRecovering)
	if got := e.director.list(); !slices.Equal(got, []string{"gs-busy"}) || len(e.gce.Instances()) != 1 {
		t.Fatalf("max lifetime: drains %v, VMs %v: want a drain and the VM kept", got, e.gce.Instances())
	}
	e.deleteGS("gs-busy") // the last session ended and the server shut down
	e.sync()
	if len(e.gce.Instances()) != 0 || e.failovers(OutcomeLifetime) != 1 {
		t.Fatalf("VMs %v after the last session", e.gce.Instances())
	}
	// Still dark: a fresh fallback after the grace.
	e.sync()
	e.clk.Step(e.cfg.FlapGrace)
	e.sync()
	if e.gce.Inserts() != 2 {
		t.Fatalf("inserts = %d, want a second fallback for the still-dark node", e.gce.Inserts())
	}
}

func TestChaosOrphanSwept(t *testing.T) {
	e := newEnv(t, 4, nil)
	e.gce.Put(testZone, "kumi-fb-gone-1", map[string]string{VMLabelManagedBy: "kumi", VMLabelNode: "gone", VMLabelAttempt: "1"})
	e.gce.Put(testZone, "kumi-fb-busy-1", map[string]string{VMLabelManagedBy: "kumi", VMLabelNode: "busy", VMLabelAttempt: "1"})
	e.gce.Put(testZone, "not-ours", map[string]string{"team": "web"})
	e.addGS("gs-on-orphan", "kumi-fb-busy-1", "Allocated")
	e.sync()
	e.clk.Step(e.cfg.OrphanGrace - time.Second)
	e.sync()
	if len(e.gce.Instances()) != 3 {
		t.Fatal("orphan deleted inside its grace")
	}
	e.clk.Step(time.Second)
	if err := e.op.Sync(e.ctx); err == nil {
		t.Fatal("want the busy orphan reported")
	}
	if got := e.gce.Instances(); !slices.Equal(got, []string{"kumi-fb-busy-1", "not-ours"}) {
		t.Fatalf("VMs after the sweep %v", got)
	}
	if e.failovers(OutcomeOrphanSwept) != 1 {
		t.Fatal("sweep not counted")
	}
}

func TestChaosKubeletOnlyIsReported(t *testing.T) {
	// A generous probe deadline: the live peer's answer must not be lost to a loaded machine.
	e := newEnv(t, 4, func(c *Config) { c.Tailnet.Timeout = 20 * time.Second })
	e.setReady("onprem-1", false) // kubelet down, tailnet peer still answering
	e.sync()
	e.clk.Step(time.Hour)
	e.sync()
	nf := e.nf("onprem-1")
	if nf.Status.Phase != v1alpha1.PhaseHealthy || e.gce.Inserts() != 0 {
		t.Fatalf("kubelet-only outage bought a VM: %+v", nf.Status)
	}
	if !apimeta.IsStatusConditionTrue(nf.Status.Conditions, v1alpha1.ConditionKubeletDown) || testutil.ToFloat64(e.metrics.kubeletOnly) != 1 {
		t.Fatal("kubelet-only outage not reported")
	}
}

func clientKey(name string) client.ObjectKey { return client.ObjectKey{Name: name} }
