package nodeoperator

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	compute "google.golang.org/api/compute/v1"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/option"
	"k8s.io/apimachinery/pkg/util/wait"
)

// VM labels: every fallback VM carries LabelManagedBy=kumi, the on-prem node it replaces and the
// attempt number, so a restarted operator finds (and adopts) what it created before.
const (
	VMLabelManagedBy = "managed-by"
	VMLabelNode      = "kumi-node"
	VMLabelAttempt   = "kumi-attempt"
)

// VM is one managed Compute Engine instance as the operator sees it.
type VM struct {
	Name    string
	Zone    string
	Node    string // VMLabelNode value
	Attempt int
	Status  string // PROVISIONING, STAGING, RUNNING, STOPPING, TERMINATED...
}

// VMSpec is what Create builds.
type VMSpec struct {
	Name          string
	Node          string
	Attempt       int
	Template      VMTemplate
	StartupScript string
}

// Cloud is the VM API the operator needs. Create treats "already exists" as success (adoption) and
// Delete treats "not found" as success, so both can be repeated after a crash.
type Cloud interface {
	List(ctx context.Context) ([]VM, error)
	Create(ctx context.Context, spec VMSpec) error
	Delete(ctx context.Context, zone, name string) error
}

// GCE is Cloud on Compute Engine through google.golang.org/api/compute/v1. Transient errors (429,
// 5xx, rate-limit and quota errors, and operations that end in one) are retried with jittered
// exponential backoff.
type GCE struct {
	svc     *compute.Service
	project string
	zones   []string
	backoff wait.Backoff
	capMax  time.Duration
	log     *slog.Logger
}

// NewGCE builds the client. opts carry credentials (a key file or, when empty, application default
// credentials such as workload identity) or a test endpoint.
func NewGCE(ctx context.Context, project string, zones []string, backoff wait.Backoff, log *slog.Logger, opts ...option.ClientOption) (*GCE, error) {
	if project == "" {
		return nil, errors.New("gce: -gcp-project is required")
	}
	svc, err := compute.NewService(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("gce: %w", err)
	}
	capMax := backoff.Cap
	backoff.Cap = 0
	return &GCE{svc: svc, project: project, zones: zones, backoff: backoff, capMax: capMax, log: log}, nil
}

// retry runs call until it succeeds, fails permanently, or the backoff's steps run out. The wait
// between tries grows with jitter and is clamped to capMax (wait.Backoff's own Cap would end the
// retries instead of clamping).
func (g *GCE) retry(ctx context.Context, what string, call func() error) error {
	b := g.backoff
	for {
		err := call()
		if err == nil {
			return nil
		}
		if !transient(err) {
			return fmt.Errorf("gce %s: %w", what, err)
		}
		if b.Steps <= 1 {
			return fmt.Errorf("gce %s: retries exhausted: %w", what, err)
		}
		d := b.Step()
		if g.capMax > 0 && d > g.capMax {
			d = g.capMax
		}
		g.log.Warn("compute engine call failed; backing off", "call", what, "backoff", d, "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("gce %s: %w (last error: %w)", what, ctx.Err(), err)
		case <-time.After(d):
		}
	}
}

// opError is a Compute Engine operation that finished with errors.
type opError struct {
	codes []string
	msg   string
}

func (e *opError) Error() string {
	return "operation failed: " + strings.Join(e.codes, ",") + ": " + e.msg
}

func transient(err error) bool {
	var ge *googleapi.Error
	if errors.As(err, &ge) {
		if ge.Code == http.StatusTooManyRequests || ge.Code >= 500 {
			return true
		}
		if ge.Code == http.StatusForbidden {
			for _, e := range ge.Errors {
				switch e.Reason {
				case "rateLimitExceeded", "userRateLimitExceeded", "quotaExceeded":
					return true
				}
			}
		}
		return false
	}
	var oe *opError
	if errors.As(err, &oe) {
		for _, c := range oe.codes {
			switch c {
			case "QUOTA_EXCEEDED", "ZONE_RESOURCE_POOL_EXHAUSTED", "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS", "RATE_LIMIT_EXCEEDED", "INTERNAL_ERROR":
				return true
			}
		}
	}
	return false
}

func isCode(err error, code int) bool {
	var ge *googleapi.Error
	return errors.As(err, &ge) && ge.Code == code
}

func alreadyExists(err error) bool {
	if isCode(err, http.StatusConflict) {
		return true
	}
	var oe *opError
	if errors.As(err, &oe) {
		for _, c := range oe.codes {
			if c == "RESOURCE_ALREADY_EXISTS" {
				return true
			}
		}
	}
	return false
}

// List returns every VM labelled managed-by=kumi in the configured zones.
func (g *GCE) List(ctx context.Context) ([]VM, error) {
	var out []VM
	for _, zone := range g.zones {
		err := g.retry(ctx, "list "+zone, func() error {
			var vms []VM
			err := g.svc.Instances.List(g.project, zone).Filter(`labels.`+VMLabelManagedBy+` = "kumi"`).MaxResults(500).
				Pages(ctx, func(l *compute.InstanceList) error {
					for _, in := range l.Items {
						a, _ := strconv.Atoi(in.Labels[VMLabelAttempt])
						vms = append(vms, VM{Name: in.Name, Zone: zone, Node: in.Labels[VMLabelNode], Attempt: a, Status: in.Status})
					}
					return nil
				})
			if err == nil {
				out = append(out, vms...)
			}
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Create inserts the VM and waits for the insert operation; "already exists" is adoption.
func (g *GCE) Create(ctx context.Context, s VMSpec) error {
	t := s.Template
	script := s.StartupScript
	in := &compute.Instance{
		Name:        s.Name,
		Description: "kumi fallback for on-prem node " + s.Node,
		MachineType: "zones/" + t.Zone + "/machineTypes/" + t.MachineType,
		Labels: map[string]string{VMLabelManagedBy: "kumi", VMLabelNode: LabelValue(s.Node),
			VMLabelAttempt: strconv.Itoa(s.Attempt)},
		AdvancedMachineFeatures: &compute.AdvancedMachineFeatures{EnableNestedVirtualization: true},
		Disks: []*compute.AttachedDisk{{Boot: true, AutoDelete: true,
			InitializeParams: &compute.AttachedDiskInitializeParams{SourceImage: t.Image, DiskSizeGb: t.DiskGB}}},
		NetworkInterfaces: []*compute.NetworkInterface{{Network: t.Network, Subnetwork: t.Subnetwork,
			AccessConfigs: []*compute.AccessConfig{{Name: "external-nat", Type: "ONE_TO_ONE_NAT"}}}},
		Metadata: &compute.Metadata{Items: []*compute.MetadataItems{{Key: "startup-script", Value: &script}}},
		Tags:     &compute.Tags{Items: t.NetworkTags},
	}
	if t.ServiceAccount != "" {
		in.ServiceAccounts = []*compute.ServiceAccount{{Email: t.ServiceAccount,
			Scopes: []string{"https://www.googleapis.com/auth/logging.write", "https://www.googleapis.com/auth/monitoring.write"}}}
	}
	if t.Spot {
		in.Scheduling = &compute.Scheduling{ProvisioningModel: "SPOT", InstanceTerminationAction: "DELETE"}
	}
	err := g.retry(ctx, "insert "+s.Name, func() error {
		op, err := g.svc.Instances.Insert(g.project, t.Zone, in).Context(ctx).Do()
		if err != nil {
			return err
		}
		return g.wait(ctx, t.Zone, op)
	})
	if alreadyExists(err) {
		g.log.Info("fallback VM already exists; adopting it", "node", s.Node, "vm", s.Name)
		return nil
	}
	return err
}

// Delete deletes the VM; a VM that is already gone is success.
func (g *GCE) Delete(ctx context.Context, zone, name string) error {
	err := g.retry(ctx, "delete "+name, func() error {
		op, err := g.svc.Instances.Delete(g.project, zone, name).Context(ctx).Do()
		if err != nil {
			return err
		}
		return g.wait(ctx, zone, op)
	})
	if isCode(err, http.StatusNotFound) {
		return nil
	}
	return err
}

// wait polls the zone operation (the server holds each wait call up to ~2 min) until DONE.
func (g *GCE) wait(ctx context.Context, zone string, op *compute.Operation) error {
	for op.Status != "DONE" {
		if err := ctx.Err(); err != nil {
			return err
		}
		var err error
		op, err = g.svc.ZoneOperations.Wait(g.project, zone, op.Name).Context(ctx).Do()
		if err != nil {
			return err
		}
	}
	if op.Error != nil && len(op.Error.Errors) > 0 {
		oe := &opError{}
		for _, e := range op.Error.Errors {
			oe.codes = append(oe.codes, e.Code)
			oe.msg = e.Message
		}
		if oe.codes[0] == "RESOURCE_NOT_FOUND" {
			return &googleapi.Error{Code: http.StatusNotFound, Message: oe.msg}
		}
		return oe
	}
	return nil
}

// Backoff turns the config into the jittered exponential backoff used for Compute Engine calls.
func (c *Config) Backoff() wait.Backoff {
	return wait.Backoff{Duration: c.RetryInitial, Factor: 2, Jitter: 0.5, Steps: c.RetrySteps, Cap: c.RetryCap}
}

// LabelValue makes s a valid GCE label value / name fragment: lowercase, [a-z0-9-], at most 40
// characters (so a VM name built from it stays under 63); a name that had to change carries a hash
// of the original.
func LabelValue(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	out := strings.Trim(b.String(), "-")
	if out == s && len(out) <= 40 {
		return out
	}
	// Altered names get a hash of the original so that two nodes never share a VM.
	h := fnv.New32a()
	h.Write([]byte(s))
	if len(out) > 31 {
		out = strings.TrimRight(out[:31], "-")
	}
	if out == "" {
		out = "node"
	}
	return fmt.Sprintf("%s-%08x", out, h.Sum32())
}

// VMName is the fallback VM (and its Kubernetes Node) for an on-prem node's attempt n.
func VMName(node string, attempt int) string {
	return fmt.Sprintf("kumi-fb-%s-%d", LabelValue(node), attempt)
}
