package allocation

import (
	"context"
	"time"
)

// Names kumi puts on game servers and allocations.
const (
	// CounterSessions is the Agones Counter a kumi game server keeps equal to its live sessions;
	// its capacity is the most sessions it hosts (lowered to the count while draining).
	CounterSessions = "sessions"
	// LabelDrain on a GameServer (label or annotation, value "true") asks the server to drain.
	LabelDrain = "kumi.dev/drain"
	// LabelPool marks a server the director allocated into its pool; the value is the pool name.
	LabelPool = "kumi.dev/pool"
)

// GameServer states of agones.dev/v1 that matter to allocation.
const (
	StateReady     = "Ready"
	StateAllocated = "Allocated"
	StateReserved  = "Reserved"
	StateShutdown  = "Shutdown"
	StateUnhealthy = "Unhealthy"
	StateError     = "Error"
)

// GameServerAllocation status states.
const (
	AllocationAllocated   = "Allocated"
	AllocationUnAllocated = "UnAllocated"
	AllocationContention  = "Contention"
)

// Spec mirrors GameServerAllocation.spec.
type Spec struct {
	// Selectors are tried in order; the first that matches any server wins.
	Selectors []Selector `json:"selectors,omitempty"`
	// Scheduling is "Packed" (default) or "Distributed".
	Scheduling string `json:"scheduling,omitempty"`
	// Priorities order candidates by available Counter/List capacity.
	Priorities []Priority `json:"priorities,omitempty"`
	// Metadata is merged onto the chosen GameServer.
	Metadata *MetaPatch `json:"metadata,omitempty"`
	// Counters are applied to the chosen GameServer (clamped, never failing the allocation).
	Counters map[string]CounterAction `json:"counters,omitempty"`
	// Lists are applied to the chosen GameServer (truncated at capacity, never failing it).
	Lists map[string]ListAction `json:"lists,omitempty"`
}

// Selector mirrors GameServerSelector (a label selector inline, plus state and capacity filters).
type Selector struct {
	MatchLabels      map[string]string  `json:"matchLabels,omitempty"`
	MatchExpressions []LabelRequirement `json:"matchExpressions,omitempty"`
	// GameServerState is "Ready" (default) or "Allocated".
	GameServerState string                     `json:"gameServerState,omitempty"`
	Counters        map[string]CounterSelector `json:"counters,omitempty"`
	Lists           map[string]ListSelector    `json:"lists,omitempty"`
}

// LabelRequirement mirrors metav1.LabelSelectorRequirement.
type LabelRequirement struct {
	Key string `json:"key"`
	// Operator is In, NotIn, Exists or DoesNotExist.
	Operator string   `json:"operator"`
	Values   []string `json:"values,omitempty"`
}

// CounterSelector bounds a Counter; available = capacity − count; a zero max means unbounded.
type CounterSelector struct {
	MinCount     int64 `json:"minCount,omitempty"`
	MaxCount     int64 `json:"maxCount,omitempty"`
	MinAvailable int64 `json:"minAvailable,omitempty"`
	MaxAvailable int64 `json:"maxAvailable,omitempty"`
}

// ListSelector bounds a List; available = capacity − len(values).
type ListSelector struct {
	ContainsValue string `json:"containsValue,omitempty"`
	MinAvailable  int64  `json:"minAvailable,omitempty"`
	MaxAvailable  int64  `json:"maxAvailable,omitempty"`
}

// Priority orders candidates: Ascending (default) puts the least available capacity first.
type Priority struct {
	// Type is "Counter" or "List".
	Type  string `json:"type"`
	Key   string `json:"key"`
	Order string `json:"order,omitempty"`
}

// MetaPatch mirrors the allocation's metadata patch.
type MetaPatch struct {
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// CounterAction mirrors CounterAction: Action is "Increment" or "Decrement" with Amount > 0.
type CounterAction struct {
	Action   *string `json:"action,omitempty"`
	Amount   *int64  `json:"amount,omitempty"`
	Capacity *int64  `json:"capacity,omitempty"`
}

// ListAction mirrors ListAction.
type ListAction struct {
	AddValues    []string `json:"addValues,omitempty"`
	DeleteValues []string `json:"deleteValues,omitempty"`
	Capacity     *int64   `json:"capacity,omitempty"`
}

// Status mirrors GameServerAllocation.status.
type Status struct {
	// State is Allocated, UnAllocated or Contention.
	State          string                   `json:"state"`
	GameServerName string                   `json:"gameServerName,omitempty"`
	Ports          []Port                   `json:"ports,omitempty"`
	Address        string                   `json:"address,omitempty"`
	Addresses      []Address                `json:"addresses,omitempty"`
	NodeName       string                   `json:"nodeName,omitempty"`
	Source         string                   `json:"source,omitempty"`
	Metadata       *MetaPatch               `json:"metadata,omitempty"`
	Counters       map[string]CounterStatus `json:"counters,omitempty"`
	Lists          map[string]ListStatus    `json:"lists,omitempty"`
}

// Port is a named port clients use.
type Port struct {
	Name string `json:"name"`
	Port int32  `json:"port"`
}

// Address is one of a server's addresses (type as in corev1.NodeAddress, or PodIP).
type Address struct {
	Type    string `json:"type"`
	Address string `json:"address"`
}

// CounterStatus is a Counter's state.
type CounterStatus struct {
	Count    int64 `json:"count"`
	Capacity int64 `json:"capacity"`
}

// ListStatus is a List's state.
type ListStatus struct {
	Capacity int64    `json:"capacity"`
	Values   []string `json:"values"`
}

// GameServer is what the director needs to know of an agones.dev/v1 GameServer.
type GameServer struct {
	Name        string                   `json:"name"`
	State       string                   `json:"state"`
	Address     string                   `json:"address"`
	Ports       []Port                   `json:"ports,omitempty"`
	Labels      map[string]string        `json:"labels,omitempty"`
	Annotations map[string]string        `json:"annotations,omitempty"`
	Counters    map[string]CounterStatus `json:"counters,omitempty"`
	Lists       map[string]ListStatus    `json:"lists,omitempty"`
	Created     time.Time                `json:"created"`
	// NodeName and Addresses are where it runs (Agones status.nodeName, status.addresses);
	// allocation packs by node and reports both.
	NodeName  string    `json:"nodeName,omitempty"`
	Addresses []Address `json:"addresses,omitempty"`
}

// Event is a change to a watched game server.
type Event struct {
	Server GameServer
	// Deleted is true when the server is gone (deleted, or a terminal state the backend dropped).
	Deleted bool
}

// Backend is where game servers come from.
type Backend interface {
	// Name identifies the backend in logs, metrics and traffic weights.
	Name() string
	// Allocate performs one GameServerAllocation. A server-side "nothing matched" is a nil error with
	// Status.State UnAllocated; errors are for transport and validation failures.
	Allocate(ctx context.Context, spec Spec) (Status, error)
	// List returns the servers whose labels include matchLabels, e.g. every server in a kumi pool,
	// so a restarted director can rebuild its pool.
	List(ctx context.Context, matchLabels map[string]string) ([]GameServer, error)
	// Watch streams changes of the servers whose labels include matchLabels until ctx ends; the
	// channel is closed then.
	Watch(ctx context.Context, matchLabels map[string]string) (<-chan Event, error)
}
