package localsdk

import (
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/kumi-dev/kumi/allocation"
)

// ListMaxCapacity is the largest List capacity Agones accepts.
const ListMaxCapacity = 1000

// Health mirrors GameServer spec.health with sub-second resolution (the wire carries whole
// seconds, rounded up), so tests and the local fleet can use short periods.
type Health struct {
	Disabled         bool          `flag:"disabled" help:"turn off health checking (the server never becomes Unhealthy for missed pings)"`
	Period           time.Duration `flag:"period" help:"a health ping must arrive at least this often"`
	FailureThreshold int           `flag:"failure-threshold" help:"consecutive missed periods before the server is marked Unhealthy"`
	InitialDelay     time.Duration `flag:"initial-delay" help:"grace after start before health is checked"`
}

// Config is the GameServer the local SDK server starts with and how its stand-in controller acts.
type Config struct {
	ListenAddr string `flag:"listen-addr" help:"gRPC address of the SDK API (host:port; port 0 picks a free one)"`
	Name       string `flag:"name" help:"GameServer name"`
	Namespace  string `flag:"namespace" help:"GameServer namespace"`
	Address    string `flag:"address" help:"status.address: where clients reach the game server"`
	// State is the starting state: Scheduled (a fresh server, the default) or Ready/Allocated/Reserved.
	State string `flag:"state" help:"initial GameServer state (Scheduled for a fresh server)"`
	// ReadyDelay is how long the stand-in controller takes to turn RequestReady into Ready.
	ReadyDelay time.Duration `flag:"ready-delay" help:"delay of the stand-in controller between RequestReady and Ready"`
	Health     Health        `prefix:"health-"`

	// Ports is status.ports.
	Ports       []allocation.Port
	Labels      map[string]string
	Annotations map[string]string
	// Counters and Lists are the declared keys; the SDK can only change keys declared here.
	Counters map[string]allocation.CounterStatus
	Lists    map[string]allocation.ListStatus
}

// Default returns the GameServer Agones' `sdk-server --local` serves, starting Scheduled so the
// game server's Ready call is what makes it Ready.
func Default() Config {
	return Config{
		ListenAddr: "127.0.0.1:9357",
		Name:       "local",
		Namespace:  "default",
		Address:    "127.0.0.1",
		State:      StateScheduled,
		Health:     Health{Period: 3 * time.Second, FailureThreshold: 5, InitialDelay: 10 * time.Second},
		Ports:      []allocation.Port{{Name: "default", Port: 7777}},
	}
}

// Validate reports every problem with cfg at once.
func (cfg *Config) Validate() error {
	var errs []error
	if cfg.ListenAddr == "" {
		errs = append(errs, errors.New("listen-addr must be set (host:port)"))
	}
	if cfg.Name == "" {
		errs = append(errs, errors.New("name must be set"))
	}
	switch cfg.State {
	case StateScheduled, StateReady, StateAllocated, StateReserved:
	default:
		errs = append(errs, fmt.Errorf("state %q must be one of Scheduled, Ready, Allocated, Reserved", cfg.State))
	}
	if cfg.ReadyDelay < 0 {
		errs = append(errs, fmt.Errorf("ready-delay %s must not be negative", cfg.ReadyDelay))
	}
	if !cfg.Health.Disabled {
		if cfg.Health.Period <= 0 {
			errs = append(errs, fmt.Errorf("health-period %s must be positive", cfg.Health.Period))
		}
		if cfg.Health.FailureThreshold < 1 {
			errs = append(errs, fmt.Errorf("health-failure-threshold %d must be at least 1", cfg.Health.FailureThreshold))
		}
		if cfg.Health.InitialDelay < 0 {
			errs = append(errs, fmt.Errorf("health-initial-delay %s must not be negative", cfg.Health.InitialDelay))
		}
	}
	for _, p := range cfg.Ports {
		if p.Name == "" || p.Port < 0 || p.Port > 65535 {
			errs = append(errs, fmt.Errorf("port %q=%d: want a name and a port in 0..65535", p.Name, p.Port))
		}
	}
	for k, v := range cfg.Labels {
		if err := validQualifiedName(k); err != nil {
			errs = append(errs, fmt.Errorf("label: %w", err))
		} else if err := validLabelValue(v); err != nil {
			errs = append(errs, fmt.Errorf("label %q: %w", k, err))
		}
	}
	for k := range cfg.Annotations {
		if err := validQualifiedName(k); err != nil {
			errs = append(errs, fmt.Errorf("annotation: %w", err))
		}
	}
	for k, c := range cfg.Counters {
		if c.Capacity < 0 || c.Count < 0 || c.Count > c.Capacity {
			errs = append(errs, fmt.Errorf("counter %q: count %d must be within [0, capacity %d] and capacity not negative", k, c.Count, c.Capacity))
		}
	}
	for k, l := range cfg.Lists {
		if l.Capacity < 0 || l.Capacity > ListMaxCapacity || int64(len(l.Values)) > l.Capacity {
			errs = append(errs, fmt.Errorf("list %q: capacity %d must be within [0, %d] and hold its %d values", k, l.Capacity, ListMaxCapacity, len(l.Values)))
		}
	}
	return errors.Join(errs...)
}

// clone copies the maps so a caller reusing its Config cannot reach the server's state.
func (cfg Config) clone() Config {
	cfg.Ports = append([]allocation.Port(nil), cfg.Ports...)
	cfg.Labels = maps.Clone(cfg.Labels)
	cfg.Annotations = maps.Clone(cfg.Annotations)
	cfg.Counters = maps.Clone(cfg.Counters)
	lists := make(map[string]allocation.ListStatus, len(cfg.Lists))
	for k, l := range cfg.Lists {
		l.Values = append([]string(nil), l.Values...)
		lists[k] = l
	}
	cfg.Lists = lists
	return cfg
}
