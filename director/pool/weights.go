package pool

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// AddBackend declares a backend so it gets a weight (default 0 until SetWeights, or an even split
// when no weight was ever set).
func (p *Pool) AddBackend(name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.backends[name] = true
}

// SetWeights replaces the traffic weights: backend → share in 0.01 % units (10000 = 100 %).
// Weights are relative (they need not sum to 10000). Every named backend must be known and at
// least one weight positive; on error nothing changes.
func (p *Pool) SetWeights(w map[string]int) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	sum := 0
	for b, v := range w {
		if !p.backends[b] {
			return fmt.Errorf("pool: weight for unknown backend %q (known: %s)", b, strings.Join(p.backendNames(), ", "))
		}
		if v < 0 || v > 10000 {
			return fmt.Errorf("pool: weight of %q is %d; want 0..10000 (units of 0.01 %%)", b, v)
		}
		sum += v
	}
	if sum == 0 {
		return errors.New("pool: at least one backend needs a weight above 0")
	}
	next := make(map[string]int, len(p.backends))
	for b := range p.backends {
		next[b] = w[b] // backends left out get 0
	}
	p.weights = next
	p.notifyLocked()
	return nil
}

// Weights returns the effective weights (0.01 % units).
func (p *Pool) Weights() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]int, len(p.backends))
	for _, b := range p.backendNames() {
		out[b] = p.weightLocked(b)
	}
	return out
}

func (p *Pool) backendNames() []string {
	names := make([]string, 0, len(p.backends))
	for b := range p.backends {
		names = append(names, b)
	}
	sort.Strings(names)
	return names
}

// weightLocked is a backend's weight; with no weights set every backend weighs the same.
func (p *Pool) weightLocked(b string) int {
	if len(p.weights) == 0 {
		if p.backends[b] {
			return 10000 / len(p.backends)
		}
		return 0
	}
	return p.weights[b]
}

// Choose is the deterministic weighted choice: the backend whose share of the cumulative weight
// range (backends in name order) holds hash(key) mod total. Uniform keys give each backend its
// weight's share. "" when every weight is 0.
func (p *Pool) Choose(key string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.chooseLocked(key)
}

func (p *Pool) chooseLocked(key string) string {
	names := p.backendNames()
	total := 0
	for _, b := range names {
		total += p.weightLocked(b)
	}
	if total == 0 {
		return ""
	}
	h := fnv64a(key) % uint64(total)
	for _, b := range names {
		w := uint64(p.weightLocked(b))
		if h < w {
			return b
		}
		h -= w
	}
	return ""
}

func fnv64a(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	// Finalise (splitmix64) so that keys differing only in their last bytes spread over the range.
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}
