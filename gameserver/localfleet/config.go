package localfleet

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/kumi-dev/kumi/allocation"
	"github.com/kumi-dev/kumi/gameserver/localsdk"
)

// Config is the fleet template, its buffer policy and the allocator's behaviour.
type Config struct {
	Name string `flag:"name" help:"fleet name: label agones.dev/fleet and prefix of GameServer names"`
	// Command runs one game server; empty means this executable with
	// "gameserver -listen-addr=<Address>:0" and then Args.
	Command []string `flag:"command" help:"game-server command and arguments (empty: this executable + gameserver + args)"`
	Args    []string `flag:"args" help:"extra arguments for the default gameserver command"`
	// Env is added to each process's environment (after the SDK variables).
	Env []string `flag:"env" help:"extra KEY=VALUE environment for game-server processes"`

	BufferSize  int `flag:"buffer-size" help:"Ready game servers to keep over the Allocated ones (Buffer policy)"`
	MinReplicas int `flag:"min-replicas" help:"fewest game servers"`
	MaxReplicas int `flag:"max-replicas" help:"most game servers"`

	SessionCapacity int64           `flag:"session-capacity" help:"capacity of each server's sessions Counter"`
	Address         string          `flag:"address" help:"address of game servers (status.address); UDP ports are taken on it"`
	ReadyDelay      time.Duration   `flag:"ready-delay" help:"delay of the stand-in controller between RequestReady and Ready"`
	Health          localsdk.Health `prefix:"health-"`

	SyncInterval      time.Duration `flag:"sync-interval" help:"period of the buffer reconciliation besides event-driven runs"`
	StopGrace         time.Duration `flag:"stop-grace" help:"SIGTERM-to-SIGKILL grace when a game-server process is deleted"`
	AllocationLatency time.Duration `flag:"allocation-latency" help:"simulated latency of each allocation (Agones batches up to 500ms)"`
	RestartBackoffMax time.Duration `flag:"restart-backoff-max" help:"longest pause before replacing servers that die before Ready"`

	// Labels, Annotations, Counters and Lists are added to the GameServer template.
	Labels      map[string]string
	Annotations map[string]string
	Counters    map[string]allocation.CounterStatus
	Lists       map[string]allocation.ListStatus
	// Output receives the game-server processes' stdout and stderr; nil discards them.
	Output io.Writer
}

// Default returns a small fleet with Agones' GameServer health defaults (5 s period, 3 failures,
// 5 s initial delay).
func Default() Config {
	return Config{
		Name:              "kumi-local",
		BufferSize:        2,
		MinReplicas:       0,
		MaxReplicas:       20,
		SessionCapacity:   1000,
		Address:           "127.0.0.1",
		Health:            localsdk.Health{Period: 5 * time.Second, FailureThreshold: 3, InitialDelay: 5 * time.Second},
		SyncInterval:      time.Second,
		StopGrace:         5 * time.Second,
		RestartBackoffMax: 5 * time.Second,
	}
}

// Validate reports every problem with cfg at once.
func (cfg *Config) Validate() error {
	var errs []error
	if cfg.Name == "" {
		errs = append(errs, errors.New("name must be set"))
	}
	if cfg.BufferSize < 0 {
		errs = append(errs, fmt.Errorf("buffer-size %d must not be negative", cfg.BufferSize))
	}
	if cfg.MinReplicas < 0 || cfg.MaxReplicas < 1 || cfg.MinReplicas > cfg.MaxReplicas {
		errs = append(errs, fmt.Errorf("min-replicas %d and max-replicas %d must satisfy 0 <= min <= max, max >= 1", cfg.MinReplicas, cfg.MaxReplicas))
	}
	if cfg.SessionCapacity < 0 {
		errs = append(errs, fmt.Errorf("session-capacity %d must not be negative", cfg.SessionCapacity))
	}
	if cfg.Address == "" {
		errs = append(errs, errors.New("address must be set"))
	}
	if cfg.SyncInterval <= 0 {
		errs = append(errs, fmt.Errorf("sync-interval %s must be positive", cfg.SyncInterval))
	}
	if cfg.StopGrace < 0 || cfg.AllocationLatency < 0 || cfg.ReadyDelay < 0 || cfg.RestartBackoffMax < 0 {
		errs = append(errs, errors.New("stop-grace, allocation-latency, ready-delay and restart-backoff-max must not be negative"))
	}
	if _, ok := cfg.Counters[allocation.CounterSessions]; ok {
		errs = append(errs, fmt.Errorf("counter %q is set by session-capacity; do not declare it in Counters", allocation.CounterSessions))
	}
	// The per-server SDK config checks health, labels, counters and lists.
	probe := cfg.sdkConfig("probe", 1)
	if err := probe.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// LabelFleet names the Fleet a GameServer belongs to, as Agones labels it.
const LabelFleet = "agones.dev/fleet"

// PortName is the name of the one port in each server's status.ports.
const PortName = "default"

// sdkConfig is the localsdk configuration of one server of this fleet.
func (cfg *Config) sdkConfig(name string, port int) localsdk.Config {
	c := localsdk.Config{
		ListenAddr:  "127.0.0.1:0",
		Name:        name,
		Namespace:   "default",
		Address:     cfg.Address,
		State:       localsdk.StateScheduled,
		ReadyDelay:  cfg.ReadyDelay,
		Health:      cfg.Health,
		Ports:       []allocation.Port{{Name: PortName, Port: int32(port)}},
		Labels:      map[string]string{LabelFleet: cfg.Name},
		Annotations: map[string]string{},
		Counters:    map[string]allocation.CounterStatus{allocation.CounterSessions: {Count: 0, Capacity: cfg.SessionCapacity}},
		Lists:       map[string]allocation.ListStatus{},
	}
	for k, v := range cfg.Labels {
		c.Labels[k] = v
	}
	for k, v := range cfg.Annotations {
		c.Annotations[k] = v
	}
	for k, v := range cfg.Counters {
		c.Counters[k] = v
	}
	for k, v := range cfg.Lists {
		c.Lists[k] = v
	}
	return c
}
