package spiky

import (
	"slices"
	"testing"
	"time"
)

// fleet builds servers of capacity 10 with the given Counter counts, named gs-1, gs-2, ...
func fleet(counts ...int) []*agonesServer {
	out := make([]*agonesServer, len(counts))
	for i, c := range counts {
		out[i] = &agonesServer{name: "gs-" + string(rune('1'+i)), count: c, capacity: 10}
	}
	return out
}

func TestAgonesPickPacksFullestWithRoom(t *testing.T) {
	tests := []struct {
		name   string
		counts []int
		want   int
	}{
		{"no servers", nil, -1},
		{"all full", []int{10, 10}, -1},
		{"fullest with room wins", []int{3, 9, 5}, 1},
		{"full server skipped", []int{10, 4, 7}, 2},
		{"allocated before ready", []int{0, 1, 0}, 1},
		{"only ready servers: oldest", []int{0, 0, 0}, 0},
		{"tie: oldest", []int{6, 8, 8}, 1},
	}
	for _, tc := range tests {
		if got := agonesPick(fleet(tc.counts...)); got != tc.want {
			t.Errorf("%s: counts %v: picked %d, want %d", tc.name, tc.counts, got, tc.want)
		}
	}
}

func TestAgonesSyncKeepsBufferAndDeletesOnlyEmpty(t *testing.T) {
	tests := []struct {
		name       string
		counts     []int
		pending    int
		buffer     int
		wantAdd    int
		wantRemove []int
	}{
		{"buffer held: nothing", []int{5, 5}, 0, 10, 0, nil},
		{"short by 1: one server", []int{10, 9}, 0, 2, 1, nil},
		{"short by 25: three servers", []int{10, 10}, 0, 25, 3, nil},
		{"starting servers count", []int{10, 10}, 2, 20, 0, nil},
		{"empty spare deleted, newest first", []int{5, 0, 0, 0}, 0, 15, 0, []int{3, 2}},
		{"partly used servers never deleted", []int{1, 1, 1, 1}, 0, 1, 0, nil},
		{"deletion stops where the buffer would break", []int{9, 0, 0}, 0, 11, 0, []int{2}},
		{"scale to nothing spare: empty fleet", []int{0, 0}, 0, 1, 0, []int{1}},
	}
	for _, tc := range tests {
		add, remove := agonesSync(fleet(tc.counts...), tc.pending, 10, tc.buffer)
		if add != tc.wantAdd || !slices.Equal(remove, tc.wantRemove) {
			t.Errorf("%s: counts %v pending %d buffer %d: add %d remove %v, want add %d remove %v",
				tc.name, tc.counts, tc.pending, tc.buffer, add, remove, tc.wantAdd, tc.wantRemove)
		}
	}
}

// TestAgonesReplay runs the pattern on a short burst: every session placed on packed servers, the
// autoscaler acting only at its sync ticks, servers leaving only when empty, and nobody moved.
func TestAgonesReplay(t *testing.T) {
	cfg := small()
	cfg.Capacity = 10
	cfg.AgonesBuffer = 10
	cfg.Duration = 10 * time.Minute
	cfg.RejectAfter = 5 * time.Minute // the autoscaler does not see waiting requests: they wait for syncs
	trace := []arrival{}
	for i := range 25 { // 25 sessions in the first 25 s, each living 2 minutes
		trace = append(trace, arrival{at: time.Duration(i) * time.Second, lifetime: 2 * time.Minute})
	}
	r, err := simulateAgones(t.Context(), cfg, trace)
	if err != nil {
		t.Fatal(err)
	}
	if r.Sessions != 25 || r.Rejected != 0 || r.Moves != 0 {
		t.Fatalf("sessions %d rejected %d moves %d, want 25, 0, 0", r.Sessions, r.Rejected, r.Moves)
	}
	// The buffer refills only at syncs, 30 s apart: the burst outruns one server of buffer, so the
	// last sessions wait for two syncs past the first.
	if r.MaxPlace < cfg.AgonesSync {
		t.Errorf("longest wait %v, want ≥ one sync interval (%v)", r.MaxPlace, cfg.AgonesSync)
	}
	// Servers change only at sync ticks (+ lead time for new ones), never in between.
	for i := 1; i < len(r.Series); i++ {
		prev, cur := r.Series[i-1], r.Series[i]
		if cur.Servers < prev.Servers && cur.T%cfg.AgonesSync != 0 {
			t.Fatalf("server deleted at %v, between syncs", cur.T)
		}
		if cur.Servers > prev.Servers && (cur.T-cfg.LeadTime)%cfg.AgonesSync != 0 {
			t.Fatalf("server added at %v, not a lead time after a sync", cur.T)
		}
	}
	// At the end every session is gone and only the buffer's one server remains.
	if last := r.Series[len(r.Series)-1]; last.Demand != 0 || last.Servers != 1 {
		t.Errorf("end: demand %d servers %d, want 0 and 1 (the buffer)", last.Demand, last.Servers)
	}
	// Packed: at the peak 25 sessions fit on 3 servers of 10, plus one empty buffer server at most.
	if r.PeakServers > 4 {
		t.Errorf("peak servers %d, want ≤ 4 with packing", r.PeakServers)
	}
}
