// Package fleet renders the Kubernetes objects that run one uploaded build version on a cluster:
// an Agones Fleet (agones.dev/v1) of `kumi gameserver wrap` pods under the Kata runtime, and the
// NetworkPolicy that fences them. It is a pure function of a build manifest and a Config, so a
// reconciler (or `kubectl apply` of its output) keeps storage the only source of truth.
//
// The pod: runtimeClassName kata by default (each pod a lightweight VM, so the untrusted server
// shares no kernel with the node), no service-account token, no service links, non-root (65534),
// read-only root filesystem, every capability dropped, no privilege escalation, seccomp
// RuntimeDefault, CPU/memory limits and a bounded scratch volume. The build is fetched and
// verified by an init container, the only container that mounts the bucket credentials; the
// server's container then runs the wrapper with -sandbox=pod (the Kata VM is the sandbox).
// One match per server: the Fleet declares a Counter "sessions" of capacity 1.
//
// The NetworkPolicy lets players in on UDP and denies egress except DNS and HTTPS to the storage
// endpoints (FetchCIDRs) the init container needs; the cloud metadata server, the director's
// control API and the rest of the cluster are unreachable.
package fleet

import (
	"fmt"
	"regexp"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/kumi-dev/kumi/builds"
)

// Config is what the cluster decides about every build's Fleet.
type Config struct {
	Namespace        string   `flag:"namespace" help:"namespace of build Fleets"`
	Image            string   `flag:"image" help:"kumi image running the wrapper (and the fetch init container)"`
	RuntimeClassName string   `flag:"runtime-class" help:"RuntimeClass of build pods (kata: a VM per pod)"`
	Bucket           string   `flag:"bucket" help:"bucket URL builds are fetched from"`
	BucketSecret     string   `flag:"bucket-secret" help:"Secret with read-only bucket credentials, mounted into the fetch init container only"`
	FetchCIDRs       []string `flag:"fetch-cidrs" help:"CIDRs of the storage endpoints the init container may reach on 443 (default: Google's private.googleapis.com)"`
	Replicas         int      `flag:"replicas" help:"ready servers per build version (the director's pool refills on top)"`
	CPU              string   `flag:"cpu" help:"CPU request and limit of a build's server"`
	Memory           string   `flag:"memory" help:"memory request and limit of a build's server"`
	Scratch          string   `flag:"scratch" help:"size limit of the unpacked build and its writes (emptyDir)"`
	GamePort         int      `flag:"game-port" help:"containerPort of the game's UDP port (hostPort is chosen by Agones)"`
	JWKSURL          string   `flag:"jwks-url" help:"JWKS URL of the director's server-token keys, for the wrapper's admission"`
}

// Default returns the defaults.
func Default() Config {
	return Config{
		Namespace:        "kumi-builds",
		Image:            "ghcr.io/kumi-dev/kumi:latest",
		RuntimeClassName: "kata",
		Bucket:           "gs://kumi-builds",
		BucketSecret:     "kumi-builds-reader",
		FetchCIDRs:       []string{"199.36.153.8/30"},
		Replicas:         2,
		CPU:              "2",
		Memory:           "4Gi",
		Scratch:          "20Gi",
		GamePort:         7777,
		JWKSURL:          "http://kumi-director.kumi.svc:8081/.well-known/jwks.json",
	}
}

// Fleet is an Agones Fleet (agones.dev/v1), declared here because agones.dev cannot be imported.
type Fleet struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              FleetSpec `json:"spec"`
}

// FleetSpec is the part of the Fleet spec kumi sets.
type FleetSpec struct {
	Replicas   int32              `json:"replicas"`
	Scheduling string             `json:"scheduling"`
	Template   GameServerTemplate `json:"template"`
}

// GameServerTemplate is a GameServer template.
type GameServerTemplate struct {
	metav1.ObjectMeta `json:"metadata"`
	Spec              GameServerSpec `json:"spec"`
}

// GameServerSpec is the part of the GameServer spec kumi sets.
type GameServerSpec struct {
	Ports    []GameServerPort         `json:"ports"`
	Health   Health                   `json:"health"`
	Counters map[string]CounterStatus `json:"counters"`
	Template corev1.PodTemplateSpec   `json:"template"`
}

// GameServerPort is one GameServer port.
type GameServerPort struct {
	Name          string `json:"name"`
	PortPolicy    string `json:"portPolicy"`
	ContainerPort int32  `json:"containerPort"`
	Protocol      string `json:"protocol"`
	Container     string `json:"container"`
}

// Health is the GameServer health spec.
type Health struct {
	PeriodSeconds       int32 `json:"periodSeconds"`
	FailureThreshold    int32 `json:"failureThreshold"`
	InitialDelaySeconds int32 `json:"initialDelaySeconds"`
}

// CounterStatus declares a Counter.
type CounterStatus struct {
	Count    int64 `json:"count"`
	Capacity int64 `json:"capacity"`
}

var dns1123 = regexp.MustCompile(`[^a-z0-9-]+`)

// Name is the Fleet name of a build version: build-<tenant>-<project>-<version>, DNS-1123 safe and
// at most 63 characters (a digest suffix keeps long names unique).
func Name(m builds.Manifest) string {
	n := "build-" + dns1123.ReplaceAllString(strings.ToLower(m.Tenant+"-"+m.Project+"-"+m.Version), "-")
	if len(n) > 50 {
		n = n[:50]
	}
	return strings.Trim(n, "-") + "-" + m.SHA256[:8]
}

// Labels are the labels on the Fleet, its GameServers and pods.
func Labels(m builds.Manifest) map[string]string {
	return map[string]string{
		"app.kubernetes.io/name":      "kumi-build",
		"app.kubernetes.io/component": "build-server",
		"kumi.dev/tenant":             m.Tenant,
		"kumi.dev/project":            m.Project,
		"kumi.dev/version":            dns1123.ReplaceAllString(strings.ToLower(m.Version), "-"),
		"kumi.dev/build":              m.SHA256[:12],
	}
}

// Render returns the Fleet and NetworkPolicy running build m.
func Render(cfg Config, m builds.Manifest) (*Fleet, *networkingv1.NetworkPolicy, error) {
	if cfg.Replicas < 0 || cfg.GamePort < 1 || cfg.GamePort > 65535 {
		return nil, nil, fmt.Errorf("fleet: replicas %d and game port %d: want replicas >= 0 and a port in 1-65535", cfg.Replicas, cfg.GamePort)
	}
	if cfg.RuntimeClassName == "" {
		return nil, nil, fmt.Errorf("fleet: runtime class is required: uploaded builds never run on the node's kernel")
	}
	cpu, err := resource.ParseQuantity(cfg.CPU)
	if err != nil {
		return nil, nil, fmt.Errorf("fleet: cpu %q: %w", cfg.CPU, err)
	}
	mem, err := resource.ParseQuantity(cfg.Memory)
	if err != nil {
		return nil, nil, fmt.Errorf("fleet: memory %q: %w", cfg.Memory, err)
	}
	scratch, err := resource.ParseQuantity(cfg.Scratch)
	if err != nil {
		return nil, nil, fmt.Errorf("fleet: scratch %q: %w", cfg.Scratch, err)
	}
	name, labels := Name(m), Labels(m)
	yes, no := true, false
	nobody := int64(65534)
	rc := cfg.RuntimeClassName
	secure := &corev1.SecurityContext{
		RunAsNonRoot: &yes, RunAsUser: &nobody, RunAsGroup: &nobody,
		ReadOnlyRootFilesystem: &yes, AllowPrivilegeEscalation: &no, Privileged: &no,
		Capabilities:   &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
	limits := corev1.ResourceList{corev1.ResourceCPU: cpu, corev1.ResourceMemory: mem, corev1.ResourceEphemeralStorage: scratch}
	common := []string{"-bucket=" + cfg.Bucket, "-tenant=" + m.Tenant, "-build=" + m.SHA256, "-work-dir=/work/build"}
	pod := corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: labels},
		Spec: corev1.PodSpec{
			RuntimeClassName:             &rc,
			AutomountServiceAccountToken: &no,
			EnableServiceLinks:           &no,
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot: &yes, RunAsUser: &nobody, RunAsGroup: &nobody, FSGroup: &nobody,
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			InitContainers: []corev1.Container{{
				Name: "fetch", Image: cfg.Image,
				Args:            append([]string{"gameserver", "wrap", "-fetch-only"}, common...),
				Env:             []corev1.EnvVar{{Name: "GOOGLE_APPLICATION_CREDENTIALS", Value: "/var/run/kumi/bucket/key.json"}},
				SecurityContext: secure,
				Resources:       corev1.ResourceRequirements{Requests: limits, Limits: limits},
				VolumeMounts: []corev1.VolumeMount{
					{Name: "work", MountPath: "/work"}, {Name: "bucket", MountPath: "/var/run/kumi/bucket", ReadOnly: true},
				},
			}},
			Containers: []corev1.Container{{
				Name: "server", Image: cfg.Image,
				Args: append([]string{"gameserver", "wrap", "-sandbox=" + "pod", "-jwt-jwks-url=" + cfg.JWKSURL,
					"-listen-addr=0.0.0.0:" + fmt.Sprint(cfg.GamePort)}, common...),
				Ports:           []corev1.ContainerPort{{Name: "game", ContainerPort: int32(cfg.GamePort), Protocol: corev1.ProtocolUDP}},
				SecurityContext: secure,
				Resources:       corev1.ResourceRequirements{Requests: limits, Limits: limits},
				VolumeMounts:    []corev1.VolumeMount{{Name: "work", MountPath: "/work"}, {Name: "tmp", MountPath: "/tmp"}},
			}},
			Volumes: []corev1.Volume{
				{Name: "work", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: &scratch}}},
				{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}},
				{Name: "bucket", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: cfg.BucketSecret}}},
			},
		},
	}
	f := &Fleet{
		TypeMeta:   metav1.TypeMeta{APIVersion: "agones.dev/v1", Kind: "Fleet"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: cfg.Namespace, Labels: labels, Annotations: map[string]string{"kumi.dev/sha256": m.SHA256}},
		Spec: FleetSpec{
			Replicas: int32(cfg.Replicas), Scheduling: "Packed",
			Template: GameServerTemplate{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: GameServerSpec{
					Ports:    []GameServerPort{{Name: "default", PortPolicy: "Dynamic", ContainerPort: int32(cfg.GamePort), Protocol: "UDP", Container: "server"}},
					Health:   Health{PeriodSeconds: 5, FailureThreshold: 3, InitialDelaySeconds: 60},
					Counters: map[string]CounterStatus{"sessions": {Count: 0, Capacity: 1}},
					Template: pod,
				},
			},
		},
	}
	udp, tcp := corev1.ProtocolUDP, corev1.ProtocolTCP
	dns, https := intstr.FromInt32(53), intstr.FromInt32(443)
	var fetch []networkingv1.NetworkPolicyPeer
	for _, c := range cfg.FetchCIDRs {
		fetch = append(fetch, networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: c}})
	}
	np := &networkingv1.NetworkPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: cfg.Namespace, Labels: labels},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"kumi.dev/build": labels["kumi.dev/build"], "kumi.dev/tenant": m.Tenant}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
			// Players come from anywhere, on UDP only.
			Ingress: []networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{{Protocol: &udp}}}},
			Egress: []networkingv1.NetworkPolicyEgressRule{
				{
					To: []networkingv1.NetworkPolicyPeer{{
						NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "kube-system"}},
						PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"k8s-app": "kube-dns"}},
					}},
					Ports: []networkingv1.NetworkPolicyPort{{Protocol: &udp, Port: &dns}, {Protocol: &tcp, Port: &dns}},
				},
				{To: fetch, Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &https}}},
			},
		},
	}
	return f, np, nil
}
