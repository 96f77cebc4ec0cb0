// Package v1alpha1 holds the NodeFailover custom resource (kumi.dev/v1alpha1): one per on-prem node,
// cluster-scoped and named after the node, whose status records what the node operator is doing
// about that node. The CRD is install/crds/nodefailover.yaml; the types are hand-written (with
// hand-written deep copies) so the product needs no code generator.
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupVersion is kumi.dev/v1alpha1.
var GroupVersion = schema.GroupVersion{Group: "kumi.dev", Version: "v1alpha1"}

// AddToScheme registers NodeFailover and NodeFailoverList with a scheme.
func AddToScheme(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &NodeFailover{}, &NodeFailoverList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}

// Phase is where a node is in the failover state machine (see nodeoperator/README.md).
type Phase string

// The phases, in the order an outage walks through them.
const (
	PhaseHealthy      Phase = "Healthy"      // on-prem node serving; no fallback VM
	PhaseSuspect      Phase = "Suspect"      // both signals down, inside the flap grace
	PhaseProvisioning Phase = "Provisioning" // fallback VM requested, its Node not Ready yet
	PhaseActive       Phase = "Active"       // fallback Node joined and Ready; join credentials revoked
	PhaseRecovering   Phase = "Recovering"   // on-prem back (or max lifetime): fallback cordoned and draining
	PhaseFailed       Phase = "Failed"       // startup attempts exhausted; waits for the on-prem node
)

// Condition types set on a NodeFailover.
const (
	ConditionDark            = "Dark"            // both signals down
	ConditionKubeletDown     = "KubeletDown"     // kubelet NotReady / lease stale
	ConditionTailnetDown     = "TailnetDown"     // peer absent / offline / probe failing
	ConditionBreakerOpen     = "BreakerOpen"     // too many dark nodes: no VMs bought
	ConditionFallbackReady   = "FallbackReady"   // fallback Node is Ready
	ConditionOutOfService    = "OutOfService"    // on-prem node tainted out-of-service
	ConditionWaitingSessions = "WaitingSessions" // fallback kept: Allocated game servers still run there
)

// NodeFailover records the failover state of one on-prem node.
type NodeFailover struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   NodeFailoverSpec   `json:"spec,omitempty"`
	Status NodeFailoverStatus `json:"status,omitempty"`
}

// NodeFailoverSpec names the on-prem node and its class (which VM template replaces it).
type NodeFailoverSpec struct {
	NodeName  string `json:"nodeName"`
	NodeClass string `json:"nodeClass,omitempty"`
}

// NodeFailoverStatus is the state machine's memory; every field survives an operator restart.
type NodeFailoverStatus struct {
	Phase Phase `json:"phase,omitempty"`
	// DarkSince is when both signals were first seen down in this outage.
	DarkSince *metav1.Time `json:"darkSince,omitempty"`
	// BackSince is when the on-prem node was first seen up again while a fallback exists.
	BackSince *metav1.Time `json:"backSince,omitempty"`
	// FailoverStartedAt is when the first VM of this outage was requested (max lifetime counts from it).
	FailoverStartedAt *metav1.Time `json:"failoverStartedAt,omitempty"`
	// Attempt counts VMs requested in this outage (1 = first).
	Attempt int `json:"attempt,omitempty"`
	// VMName is the current fallback instance (also its Kubernetes Node name); VMZone its zone.
	VMName string `json:"vmName,omitempty"`
	VMZone string `json:"vmZone,omitempty"`
	// ProvisionStartedAt is when VMName was requested (the startup timeout counts from it).
	ProvisionStartedAt *metav1.Time `json:"provisionStartedAt,omitempty"`
	// BootstrapTokenID is the kubeadm bootstrap token issued for VMName ("" once revoked).
	BootstrapTokenID string `json:"bootstrapTokenID,omitempty"`
	// AuthKeyID is the tailnet auth key issued for VMName ("" once revoked).
	AuthKeyID string `json:"authKeyID,omitempty"`
	// JoinedAt is when the fallback Node was first seen Ready.
	JoinedAt *metav1.Time `json:"joinedAt,omitempty"`
	// Tainted is true while the operator's out-of-service taint is on the on-prem node.
	Tainted bool `json:"tainted,omitempty"`
	// RecoveryReason says why the fallback is being drained (on-prem back, max lifetime).
	RecoveryReason string `json:"recoveryReason,omitempty"`
	// DrainRequested lists the game servers the director was asked to drain.
	DrainRequested []string `json:"drainRequested,omitempty"`
	// Message is a human summary of the last decision.
	Message    string             `json:"message,omitempty"`
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// NodeFailoverList is a list of NodeFailover.
type NodeFailoverList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []NodeFailover `json:"items"`
}

// DeepCopyInto copies in into out.
func (in *NodeFailoverStatus) DeepCopyInto(out *NodeFailoverStatus) {
	*out = *in
	cpTime := func(t *metav1.Time) *metav1.Time {
		if t == nil {
			return nil
		}
		c := t.DeepCopy()
		return c
	}
	out.DarkSince = cpTime(in.DarkSince)
	out.BackSince = cpTime(in.BackSince)
	out.FailoverStartedAt = cpTime(in.FailoverStartedAt)
	out.ProvisionStartedAt = cpTime(in.ProvisionStartedAt)
	out.JoinedAt = cpTime(in.JoinedAt)
	if in.DrainRequested != nil {
		out.DrainRequested = append([]string(nil), in.DrainRequested...)
	}
	if in.Conditions != nil {
		out.Conditions = make([]metav1.Condition, len(in.Conditions))
		for i := range in.Conditions {
			in.Conditions[i].DeepCopyInto(&out.Conditions[i])
		}
	}
}

// DeepCopyInto copies in into out.
func (in *NodeFailover) DeepCopyInto(out *NodeFailover) {
	*out = *in
	out.TypeMeta = in.TypeMeta
	in.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	out.Spec = in.Spec
	in.Status.DeepCopyInto(&out.Status)
}

// DeepCopy returns a deep copy.
func (in *NodeFailover) DeepCopy() *NodeFailover {
	if in == nil {
		return nil
	}
	out := new(NodeFailover)
	in.DeepCopyInto(out)
	return out
}

// DeepCopyObject implements runtime.Object.
func (in *NodeFailover) DeepCopyObject() runtime.Object { return in.DeepCopy() }

// DeepCopyObject implements runtime.Object.
func (in *NodeFailoverList) DeepCopyObject() runtime.Object {
	if in == nil {
		return nil
	}
	out := new(NodeFailoverList)
	*out = *in
	in.ListMeta.DeepCopyInto(&out.ListMeta)
	if in.Items != nil {
		out.Items = make([]NodeFailover, len(in.Items))
		for i := range in.Items {
			in.Items[i].DeepCopyInto(&out.Items[i])
		}
	}
	return out
}
