package nodeoperator

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"time"

	"k8s.io/apimachinery/pkg/labels"
)

// Config is every knob of the node operator. Defaults are in Default; `kumi nodeoperator -h` prints
// the help tags, and Run logs the effective values at start.
type Config struct {
	Kubeconfig      string        `flag:"kubeconfig" help:"kubeconfig file; empty means the in-cluster service account"`
	NodeSelector    string        `flag:"node-selector" help:"label selector of the on-prem Nodes the operator guards"`
	ClassLabel      string        `flag:"class-label" help:"Node label naming the node class (which VM template replaces it); missing means class default"`
	SyncPeriod      time.Duration `flag:"sync-period" help:"how often the whole pool is re-evaluated (Node changes also trigger a pass)"`
	LeaderElect     bool          `flag:"leader-elect" help:"hold a Lease so only one operator replica acts"`
	LeaderNamespace string        `flag:"leader-namespace" help:"namespace of the leader-election Lease"`
	MetricsAddr     string        `flag:"metrics-addr" help:"Prometheus /metrics listener (no secrets served; restrict with a NetworkPolicy); empty disables"`
	HealthAddr      string        `flag:"health-addr" help:"liveness/readiness probe listener (/healthz, /readyz); empty disables"`

	FlapGrace         time.Duration `flag:"flap-grace" help:"both signals must stay down this long before a node counts as dark"`
	LeaseStale        time.Duration `flag:"lease-stale" help:"a kubelet Lease not renewed for this long counts as kubelet down"`
	KubeletOnly       bool          `flag:"failover-on-kubelet-only" help:"buy a VM when the kubelet is down even if the tailnet peer is up (default: report only)"`
	TaintAfter        time.Duration `flag:"taint-after" help:"taint a dark node node.kubernetes.io/out-of-service after this long dark, so its pods are rescheduled"`
	RecoveryStable    time.Duration `flag:"recovery-stable" help:"the on-prem node must be back this long before its fallback is drained"`
	MaxUnhealthyCount int           `flag:"max-unhealthy" help:"breaker: buy no VMs while more than this many on-prem nodes are dark at once; 0 disables the count rule"`
	MaxUnhealthyPct   float64       `flag:"max-unhealthy-percent" help:"breaker: buy no VMs while more than this percent of the on-prem pool is dark (a single dark node never trips it); 0 disables"`
	StartupTimeout    time.Duration `flag:"startup-timeout" help:"a fallback VM whose Node is not Ready within this is deleted and replaced"`
	MaxAttempts       int           `flag:"max-attempts" help:"VMs tried per outage before the NodeFailover goes Failed"`
	MaxLifetime       time.Duration `flag:"max-lifetime" help:"a fallback older than this is drained (sessions move) and removed even if on-prem is still dark"`
	OrphanGrace       time.Duration `flag:"orphan-grace" help:"a managed-by=kumi VM no NodeFailover claims is deleted after it has been seen this long"`
	JoinTTL           time.Duration `flag:"join-ttl" help:"lifetime of the bootstrap token and tailnet auth key handed to a fallback VM (revoked as soon as it joins)"`

	GCPProject      string        `flag:"gcp-project" help:"GCP project that owns the fallback VMs"`
	GCPCredentials  string        `flag:"gcp-credentials" help:"service-account key file; empty means workload identity / application default credentials"`
	ComputeEndpoint string        `flag:"compute-endpoint" help:"Compute Engine API endpoint (ends in /compute/v1/); empty means Google's"`
	ClassesFile     string        `flag:"classes" help:"JSON file: node class -> VM template (overrides/extends the default class below)"`
	Default         VMTemplate    `prefix:"vm-"`
	RetryInitial    time.Duration `flag:"gce-retry-initial" help:"first backoff after a 429/5xx/quota error from Compute Engine (exponential, jittered)"`
	RetrySteps      int           `flag:"gce-retry-steps" help:"attempts per Compute Engine call before the pass gives up (the next pass tries again)"`
	RetryCap        time.Duration `flag:"gce-retry-cap" help:"longest single backoff between Compute Engine retries"`

	APIServer  string `flag:"join-apiserver" help:"API server address fallback VMs join, by its tailnet name (host:port)"`
	CACertHash string `flag:"join-ca-hash" help:"kubeadm discovery CA hash (sha256:...); empty means computed from kube-public/cluster-info"`

	Tailnet TailnetConfig `prefix:"tailnet-"`

	DirectorAdminURL  string `flag:"director-admin-url" help:"kumi director admin API base URL, asked to drain a fallback node's game servers so sessions move; empty skips the drain call"`
	DirectorTokenFile string `flag:"director-token-file" help:"file holding the bearer token for the director admin API (re-read on every call)"`
}

// VMTemplate is how one node class's fallback VM is built.
type VMTemplate struct {
	Zone           string   `json:"zone" flag:"zone" help:"default class: zone of the fallback VM"`
	MachineType    string   `json:"machineType" flag:"machine-type" help:"default class: machine type (nested virtualization needs an Intel type such as n2-)"`
	Image          string   `json:"image" flag:"image" help:"default class: boot image with tailscaled, kubeadm and kubelet installed"`
	DiskGB         int64    `json:"diskGB" flag:"disk-gb" help:"default class: boot disk size in GB"`
	Network        string   `json:"network" flag:"network" help:"default class: VPC network"`
	Subnetwork     string   `json:"subnetwork" flag:"subnetwork" help:"default class: subnetwork; empty means the network's auto subnet"`
	NetworkTags    []string `json:"networkTags" flag:"network-tags" help:"default class: network tags (the game UDP firewall rule targets these)"`
	ServiceAccount string   `json:"serviceAccount" flag:"service-account" help:"default class: service account the VM runs as; empty means none (no Google API access from the VM)"`
	Spot           bool     `json:"spot" flag:"spot" help:"default class: use Spot VMs (cheaper, can be preempted)"`
}

// TailnetConfig is the operator's own tailnet identity and how peers are probed.
type TailnetConfig struct {
	Hostname    string        `flag:"hostname" help:"the operator's tailnet hostname"`
	StateDir    string        `flag:"state-dir" help:"tsnet state directory (a persistent volume keeps the node identity across restarts)"`
	AuthKeyFile string        `flag:"auth-key-file" help:"file holding the operator's tailnet auth key (mount it from a Secret); only needed on first login"`
	ControlURL  string        `flag:"control-url" help:"tailnet coordination server; empty means Tailscale's"`
	Ephemeral   bool          `flag:"ephemeral" help:"register the operator as an ephemeral node (removed when it goes away; use with an emptyDir state)"`
	ProbePort   int           `flag:"probe-port" help:"TCP port dialled on each on-prem peer over the tailnet; 0 means a disco ping"`
	Timeout     time.Duration `flag:"probe-timeout" help:"deadline of one peer probe"`
	Disabled    bool          `flag:"disabled" help:"do not join the tailnet; darkness then rests on the kubelet signal alone (testing only)"`

	APIURL     string   `flag:"api-url" help:"Tailscale API base URL used to mint and revoke fallback VM auth keys"`
	Tailnet    string   `flag:"api-tailnet" help:"tailnet name in the Tailscale API ('-' means the API key's default tailnet)"`
	APIKeyFile string   `flag:"api-key-file" help:"file holding a Tailscale API access token allowed to create auth keys"`
	VMTags     []string `flag:"vm-tags" help:"ACL tags the fallback VM's single-use auth key carries"`
}

// Default returns the defaults every flag starts from.
func Default() Config {
	return Config{
		NodeSelector:    "kumi.dev/onprem=true",
		ClassLabel:      "kumi.dev/node-class",
		SyncPeriod:      10 * time.Second,
		LeaderElect:     true,
		LeaderNamespace: "kumi",
		MetricsAddr:     ":9102",
		HealthAddr:      ":9103",
		FlapGrace:       30 * time.Second,
		LeaseStale:      40 * time.Second,
		TaintAfter:      300 * time.Second,
		RecoveryStable:  60 * time.Second,
		MaxUnhealthyPct: 40,
		StartupTimeout:  10 * time.Minute,
		MaxAttempts:     3,
		MaxLifetime:     24 * time.Hour,
		OrphanGrace:     15 * time.Minute,
		JoinTTL:         time.Hour,
		RetryInitial:    time.Second,
		RetrySteps:      5,
		RetryCap:        30 * time.Second,
		APIServer:       "kube-apiserver:6443",
		Default: VMTemplate{
			Zone:        "europe-west4-a",
			MachineType: "n2-standard-8",
			Image:       "projects/kumi-images/global/images/family/kumi-node",
			DiskGB:      100,
			Network:     "global/networks/default",
			NetworkTags: []string{"kumi-game"},
		},
		Tailnet: TailnetConfig{
			Hostname: "kumi-nodeoperator",
			StateDir: "/var/lib/kumi/tailscale",
			Timeout:  5 * time.Second,
			APIURL:   "https://api.tailscale.com",
			Tailnet:  "-",
			VMTags:   []string{"tag:kumi-fallback"},
		},
	}
}

var gceName = regexp.MustCompile(`^[a-z]([-a-z0-9]*[a-z0-9])?$`)

// Validate reports the first bad setting, naming the flag.
func (c *Config) Validate() error {
	var errs []error
	if _, err := labels.Parse(c.NodeSelector); err != nil || c.NodeSelector == "" {
		errs = append(errs, fmt.Errorf("-node-selector %q: want a non-empty label selector (%v)", c.NodeSelector, err))
	}
	pos := map[string]time.Duration{"-sync-period": c.SyncPeriod, "-flap-grace": c.FlapGrace, "-lease-stale": c.LeaseStale,
		"-taint-after": c.TaintAfter, "-startup-timeout": c.StartupTimeout, "-max-lifetime": c.MaxLifetime,
		"-orphan-grace": c.OrphanGrace, "-join-ttl": c.JoinTTL, "-gce-retry-initial": c.RetryInitial, "-tailnet-probe-timeout": c.Tailnet.Timeout}
	for name, d := range pos {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%s must be > 0, got %v", name, d))
		}
	}
	if c.RecoveryStable < 0 {
		errs = append(errs, fmt.Errorf("-recovery-stable must be >= 0, got %v", c.RecoveryStable))
	}
	if c.MaxAttempts < 1 {
		errs = append(errs, fmt.Errorf("-max-attempts must be >= 1, got %d", c.MaxAttempts))
	}
	if c.RetrySteps < 1 {
		errs = append(errs, fmt.Errorf("-gce-retry-steps must be >= 1, got %d", c.RetrySteps))
	}
	if c.MaxUnhealthyCount < 0 || c.MaxUnhealthyPct < 0 || c.MaxUnhealthyPct > 100 {
		errs = append(errs, fmt.Errorf("-max-unhealthy %d / -max-unhealthy-percent %v: want >= 0 and a percent <= 100", c.MaxUnhealthyCount, c.MaxUnhealthyPct))
	}
	if c.Tailnet.ProbePort < 0 || c.Tailnet.ProbePort > 65535 {
		errs = append(errs, fmt.Errorf("-tailnet-probe-port %d out of range", c.Tailnet.ProbePort))
	}
	return errors.Join(errs...)
}

// Classes returns every node class's VM template: "default" from the flags, the rest from
// ClassesFile (a class there may also override default). Each template is checked.
func (c *Config) Classes() (map[string]VMTemplate, error) {
	out := map[string]VMTemplate{"default": c.Default}
	if c.ClassesFile != "" {
		b, err := os.ReadFile(c.ClassesFile)
		if err != nil {
			return nil, fmt.Errorf("-classes: %w", err)
		}
		var m map[string]VMTemplate
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&m); err != nil {
			return nil, fmt.Errorf("-classes %s: want {\"<class>\": {\"zone\": ..., \"machineType\": ..., \"image\": ...}}: %w", c.ClassesFile, err)
		}
		for k, v := range m {
			out[k] = v
		}
	}
	for name, t := range out {
		if t.Zone == "" || t.MachineType == "" || t.Image == "" {
			return nil, fmt.Errorf("node class %q: zone, machineType and image are required", name)
		}
		if !gceName.MatchString(t.Zone) {
			return nil, fmt.Errorf("node class %q: zone %q is not a zone name", name, t.Zone)
		}
		if t.DiskGB < 10 {
			return nil, fmt.Errorf("node class %q: diskGB %d: want >= 10", name, t.DiskGB)
		}
	}
	return out, nil
}
