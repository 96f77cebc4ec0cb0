package ticketseal

import (
	"errors"
	"testing"
	"time"

	"github.com/kumi-dev/kumi/api/openmatch"
	"github.com/kumi-dev/kumi/internal/omext"
	"google.golang.org/protobuf/proto"
)

func TestSealCheck(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	s, err := New("0123456789abcdef0123456789abcdef", 15*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := New("another-secret-another-secret", 15*time.Minute)
	sf := &openmatch.SearchFields{StringArgs: map[string]string{"mode": "voice", "chat_group": "guild-7"},
		DoubleArgs: map[string]float64{"skill": 1450.5}, Tags: []string{"ranked", "eu"}}
	sealed := &openmatch.Ticket{SearchFields: sf, Extensions: s.Seal(nil, "p1", sf, now)}
	if err := s.Check(sealed, "p1", now.Add(time.Minute)); err != nil {
		t.Fatalf("valid seal: %v", err)
	}
	// Tag order is not part of the contract: the core may return them in another order.
	reordered := proto.Clone(sealed).(*openmatch.Ticket)
	reordered.SearchFields.Tags = []string{"eu", "ranked"}
	if err := s.Check(reordered, "p1", now); err != nil {
		t.Fatalf("reordered tags: %v", err)
	}
	mut := func(f func(*openmatch.Ticket)) *openmatch.Ticket {
		c := proto.Clone(sealed).(*openmatch.Ticket)
		f(c)
		return c
	}
	for _, tc := range []struct {
		name   string
		t      *openmatch.Ticket
		player string
		at     time.Time
		sealer *Sealer
		want   error
	}{
		{"no seal", &openmatch.Ticket{SearchFields: sf}, "p1", now, s, ErrMissing},
		{"other player", sealed, "p2", now, s, ErrInvalid},
		{"other chat group", mut(func(t *openmatch.Ticket) { t.SearchFields.StringArgs["chat_group"] = "raid" }), "p1", now, s, ErrInvalid},
		{"added string arg", mut(func(t *openmatch.Ticket) { t.SearchFields.StringArgs["party"] = "x" }), "p1", now, s, ErrInvalid},
		{"other skill", mut(func(t *openmatch.Ticket) { t.SearchFields.DoubleArgs["skill"] = 1450.25 }), "p1", now, s, ErrInvalid},
		{"dropped tag", mut(func(t *openmatch.Ticket) { t.SearchFields.Tags = t.SearchFields.Tags[:1] }), "p1", now, s, ErrInvalid},
		{"other key", sealed, "p1", now, other, ErrInvalid},
		{"garbage", mut(func(t *openmatch.Ticket) { omext.PutString(t.Extensions, omext.Seal, "v1.x.y") }), "p1", now, s, ErrInvalid},
		{"wrong type", mut(func(t *openmatch.Ticket) { omext.PutInt(t.Extensions, omext.Seal, 1) }), "p1", now, s, ErrInvalid},
		{"too old", sealed, "p1", now.Add(16 * time.Minute), s, ErrExpired},
	} {
		if err := tc.sealer.Check(tc.t, tc.player, tc.at); !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
	}
	if _, err := New("short", 0); err == nil {
		t.Fatal("short secret accepted")
	}
}

func BenchmarkCheck(b *testing.B) {
	s, _ := New("0123456789abcdef0123456789abcdef", 0)
	sf := &openmatch.SearchFields{StringArgs: map[string]string{"mode": "voice", "chat_group": "guild-7", "region": "eu"}}
	now := time.Now()
	t := &openmatch.Ticket{SearchFields: sf, Extensions: s.Seal(nil, "player-123", sf, now)}
	for b.Loop() {
		if err := s.Check(t, "player-123", now); err != nil {
			b.Fatal(err)
		}
	}
}
