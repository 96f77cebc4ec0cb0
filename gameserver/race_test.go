//go:build race

package gameserver

// raceEnabled: the race detector makes sync.Pool drop items at random, so pooled buffers (the
// batch writer's) are reallocated now and then.
const raceEnabled = true
