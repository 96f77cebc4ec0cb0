package matchfunction

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/kumi-dev/kumi/api/openmatch"
	"github.com/kumi-dev/kumi/internal/omext"
	"github.com/kumi-dev/kumi/internal/tlsconfig"
	"sigs.k8s.io/yaml"
)

// Config is every setting of the match function.
type Config struct {
	ListenAddr   string        `flag:"listen-addr" help:"gRPC address serving openmatch.MatchFunction/Run (host:port; port 0 picks a free one)"`
	QueryAddr    string        `flag:"query-addr" help:"Open Match QueryService gRPC address (host:port) the match function reads tickets from"`
	ProfilesFile string        `flag:"profiles" help:"YAML or JSON file of match profiles (format in matchfunction/doc.go); empty uses the built-in voice and duel profiles"`
	QueryTimeout time.Duration `flag:"query-timeout" help:"upper bound on querying all pools of one Run call"`
	MetricsAddr  string        `flag:"metrics-addr" help:"HTTP address serving /metrics (Prometheus) and /healthz; empty disables"`
	// TLS secures the listener Open Match's core calls (mTLS with tls-client-ca-file).
	TLS tlsconfig.Config `prefix:"tls-"`
	// Insecure: the listener carries every waiting ticket's search fields to whoever calls Run.
	Insecure bool `flag:"insecure" help:"allow a plaintext listener on a non-loopback address (only on a network where nobody but the Open Match core can reach it)"`
	// QueryTLS secures the connection to Open Match's QueryService.
	QueryTLS tlsconfig.Config `prefix:"query-tls-"`

	// Profiles are used in addition to ProfilesFile (for callers that build them in code, like
	// kumi local). When both are empty the built-in DefaultProfiles apply.
	Profiles []Profile
}

// Default returns the defaults: upstream Open Match's ports (MMF 50502, query 50503).
func Default() Config {
	return Config{
		ListenAddr:   ":50502",
		QueryAddr:    "127.0.0.1:50503",
		QueryTimeout: 10 * time.Second,
	}
}

// Profile is what the match function does for one Open Match MatchProfile name. The director sends
// FetchMatches with a MatchProfile of the same name; the match function looks the parameters up by
// that name (the MatchProfile itself only carries pools), so a profile file is the single source the
// director and the match function share (see Profile.MatchProfile).
type Profile struct {
	// Name is the MatchProfile.name the director uses.
	Name string `json:"name"`
	// Kind is "rendezvous" (everyone with the same group id meets) or "match" (N players).
	Kind string `json:"kind"`
	// MaxMembers is the session's member limit: a rendezvous group larger than this is split into
	// several matches. For match profiles it defaults to Players.
	MaxMembers int `json:"max_members,omitempty"`
	// Pools are the Open Match pools to query when the FetchMatches profile carries none.
	Pools []PoolSpec `json:"pools"`

	// GroupArg (rendezvous) is the search_fields.string_args key holding the chat-group id.
	GroupArg string `json:"group_arg,omitempty"`

	// Players (match) is the exact number of players per match.
	Players int `json:"players,omitempty"`
	// GroupBy (match) are string_args keys whose values must be equal within a match (mode, region).
	GroupBy []string `json:"group_by,omitempty"`
	// SkillArg (match) is the search_fields.double_args key with the player's skill; empty ignores skill.
	SkillArg string `json:"skill_arg,omitempty"`
	// SkillWindow (match) is the largest skill difference from the match's oldest ticket at zero wait.
	SkillWindow float64 `json:"skill_window,omitempty"`
	// SkillWindowGrowth (match) widens the window by this much per second the oldest ticket waited.
	SkillWindowGrowth float64 `json:"skill_window_growth,omitempty"`
	// SkillWindowMax (match) caps the widened window; 0 means no cap.
	SkillWindowMax float64 `json:"skill_window_max,omitempty"`
	// PartyArg (match) is the string_args key of a party id: tickets sharing it are matched together.
	PartyArg string `json:"party_arg,omitempty"`
	// PartySizeArg (match) is the double_args key with the party's declared size: a party waits until
	// that many of its tickets are present. Empty matches whatever part of the party is present.
	PartySizeArg string `json:"party_size_arg,omitempty"`
}

// PoolSpec is an Open Match Pool in a compact form; all filters are ANDed.
type PoolSpec struct {
	Name         string            `json:"name"`
	StringEquals map[string]string `json:"string_equals,omitempty"`
	DoubleRanges []DoubleRange     `json:"double_ranges,omitempty"`
	Tags         []string          `json:"tags,omitempty"`
}

// DoubleRange keeps tickets with Min ≤ double_args[Arg] ≤ Max.
type DoubleRange struct {
	Arg string  `json:"arg"`
	Min float64 `json:"min"`
	Max float64 `json:"max"`
}

// DefaultProfiles are used when no profile is configured: a voice rendezvous ("voice", tickets with
// string arg mode=voice grouped by chat_group, 16 members a session like the game server's default
// -max-members) and a 1v1 game ("duel", mode=duel, 2 players by mode and region, skill window 100
// widening 20/s up to 1000, parties by "party"). Attribute names match the frontend's default
// allow-list.
func DefaultProfiles() []Profile {
	return []Profile{
		{
			Name: "voice", Kind: omext.KindRendezvous, MaxMembers: 16, GroupArg: "chat_group",
			Pools: []PoolSpec{{Name: "voice", StringEquals: map[string]string{"mode": "voice"}}},
		},
		{
			Name: "duel", Kind: omext.KindMatch, Players: 2, GroupBy: []string{"mode", "region"},
			SkillArg: "skill", SkillWindow: 100, SkillWindowGrowth: 20, SkillWindowMax: 1000,
			PartyArg: "party", PartySizeArg: "party_size",
			Pools: []PoolSpec{{Name: "duel", StringEquals: map[string]string{"mode": "duel"}}},
		},
	}
}

// ProfileFile is the layout of the profiles file: {"profiles": [...]}.
type ProfileFile struct {
	Profiles []Profile `json:"profiles"`
}

// LoadProfiles reads a YAML or JSON profiles file and validates it. Unknown fields are refused so a
// misspelt setting is an error rather than a silent default.
func LoadProfiles(path string) ([]Profile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("profiles file: %w", err)
	}
	ps, err := ParseProfiles(data)
	if err != nil {
		return nil, fmt.Errorf("profiles file %s: %w", path, err)
	}
	return ps, nil
}

// ParseProfiles parses and validates a YAML or JSON profiles document (JSON is YAML).
func ParseProfiles(data []byte) ([]Profile, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errors.New("empty document: want {profiles: [...]}")
	}
	var f ProfileFile
	if err := yaml.UnmarshalStrict(data, &f); err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	if len(f.Profiles) == 0 {
		return nil, errors.New("profiles: at least one profile is required")
	}
	if err := ValidateProfiles(f.Profiles); err != nil {
		return nil, err
	}
	return f.Profiles, nil
}

// ValidateProfiles checks every profile and that names are unique. Errors name the profile by index
// and name, and the field to fix.
func ValidateProfiles(ps []Profile) error {
	seen := make(map[string]int, len(ps))
	var errs []error
	for i, p := range ps {
		if err := p.Validate(); err != nil {
			// One line per problem, each naming the profile.
			list := []error{err}
			if j, ok := err.(interface{ Unwrap() []error }); ok {
				list = j.Unwrap()
			}
			for _, e := range list {
				errs = append(errs, fmt.Errorf("profiles[%d] (%q): %w", i, p.Name, e))
			}
			continue
		}
		if j, dup := seen[p.Name]; dup {
			errs = append(errs, fmt.Errorf("profiles[%d] (%q): name: already used by profiles[%d]", i, p.Name, j))
		}
		seen[p.Name] = i
	}
	return errors.Join(errs...)
}

// Validate reports the first problems of one profile, each naming its field.
func (p *Profile) Validate() error {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, a...)))
	}
	if strings.TrimSpace(p.Name) == "" {
		bad("name", "required")
	}
	switch p.Kind {
	case omext.KindRendezvous:
		if p.GroupArg == "" {
			bad("group_arg", "required for kind %q (the string_args key of the chat-group id)", p.Kind)
		}
		if p.MaxMembers < 1 {
			bad("max_members", "must be ≥ 1 for kind %q, got %d", p.Kind, p.MaxMembers)
		}
		for field, set := range map[string]bool{
			"players": p.Players != 0, "group_by": len(p.GroupBy) > 0, "skill_arg": p.SkillArg != "",
			"party_arg": p.PartyArg != "", "party_size_arg": p.PartySizeArg != "",
			"skill_window": p.SkillWindow != 0, "skill_window_growth": p.SkillWindowGrowth != 0,
			"skill_window_max": p.SkillWindowMax != 0,
		} {
			if set {
				bad(field, "only applies to kind %q", omext.KindMatch)
			}
		}
	case omext.KindMatch:
		if p.Players < 1 {
			bad("players", "must be ≥ 1 for kind %q, got %d", p.Kind, p.Players)
		}
		if p.MaxMembers != 0 && p.MaxMembers < p.Players {
			bad("max_members", "%d is below players (%d)", p.MaxMembers, p.Players)
		}
		if p.GroupArg != "" {
			bad("group_arg", "only applies to kind %q", omext.KindRendezvous)
		}
		for i, k := range p.GroupBy {
			if k == "" {
				bad(fmt.Sprintf("group_by[%d]", i), "empty key")
			}
		}
		for _, f := range []struct {
			name string
			v    float64
		}{{"skill_window", p.SkillWindow}, {"skill_window_growth", p.SkillWindowGrowth}, {"skill_window_max", p.SkillWindowMax}} {
			if f.v < 0 || math.IsNaN(f.v) || math.IsInf(f.v, 0) {
				bad(f.name, "must be a finite number ≥ 0, got %v", f.v)
			}
		}
		if p.SkillArg == "" && (p.SkillWindow != 0 || p.SkillWindowGrowth != 0 || p.SkillWindowMax != 0) {
			bad("skill_arg", "required when a skill_window setting is given")
		}
		if p.SkillWindowMax != 0 && p.SkillWindowMax < p.SkillWindow {
			bad("skill_window_max", "%v is below skill_window (%v)", p.SkillWindowMax, p.SkillWindow)
		}
		if p.PartySizeArg != "" && p.PartyArg == "" {
			bad("party_size_arg", "needs party_arg")
		}
	default:
		bad("kind", "must be %q or %q, got %q", omext.KindRendezvous, omext.KindMatch, p.Kind)
	}
	if len(p.Pools) == 0 {
		bad("pools", "at least one pool is required")
	}
	pools := make(map[string]bool, len(p.Pools))
	for i, pool := range p.Pools {
		field := fmt.Sprintf("pools[%d]", i)
		if pool.Name == "" {
			bad(field+".name", "required")
		} else if pools[pool.Name] {
			bad(field+".name", "%q used twice", pool.Name)
		}
		pools[pool.Name] = true
		for j, r := range pool.DoubleRanges {
			f := fmt.Sprintf("%s.double_ranges[%d]", field, j)
			if r.Arg == "" {
				bad(f+".arg", "required")
			}
			if math.IsNaN(r.Min) || math.IsNaN(r.Max) || r.Min > r.Max {
				bad(f, "want min ≤ max, got min %v max %v", r.Min, r.Max)
			}
		}
		for k := range pool.StringEquals {
			if k == "" {
				bad(field+".string_equals", "empty key")
			}
		}
		for j, t := range pool.Tags {
			if t == "" {
				bad(fmt.Sprintf("%s.tags[%d]", field, j), "empty tag")
			}
		}
	}
	sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
	return errors.Join(errs...)
}

// members is the session member limit the director is told (omext.MaxMembers).
func (p *Profile) members() int {
	if p.MaxMembers > 0 {
		return p.MaxMembers
	}
	return p.Players
}

// MatchProfile builds the Open Match MatchProfile the director sends in FetchMatches for p.
func (p *Profile) MatchProfile() *openmatch.MatchProfile {
	mp := &openmatch.MatchProfile{Name: p.Name}
	for _, ps := range p.Pools {
		mp.Pools = append(mp.Pools, ps.Pool())
	}
	return mp
}

// Pool converts the spec to an Open Match pool; string filters are sorted by key so the result is
// deterministic.
func (ps PoolSpec) Pool() *openmatch.Pool {
	pool := &openmatch.Pool{Name: ps.Name}
	keys := make([]string, 0, len(ps.StringEquals))
	for k := range ps.StringEquals {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		pool.StringEqualsFilters = append(pool.StringEqualsFilters, &openmatch.StringEqualsFilter{StringArg: k, Value: ps.StringEquals[k]})
	}
	for _, r := range ps.DoubleRanges {
		pool.DoubleRangeFilters = append(pool.DoubleRangeFilters, &openmatch.DoubleRangeFilter{DoubleArg: r.Arg, Min: r.Min, Max: r.Max})
	}
	for _, t := range ps.Tags {
		pool.TagPresentFilters = append(pool.TagPresentFilters, &openmatch.TagPresentFilter{Tag: t})
	}
	return pool
}

// profiles resolves the configured profile set: the file, plus Profiles, or the defaults when both are
// empty.
func (c *Config) profiles() ([]Profile, error) {
	var ps []Profile
	if c.ProfilesFile != "" {
		fromFile, err := LoadProfiles(c.ProfilesFile)
		if err != nil {
			return nil, err
		}
		ps = append(ps, fromFile...)
	}
	ps = append(ps, c.Profiles...)
	if len(ps) == 0 {
		ps = DefaultProfiles()
	}
	if err := ValidateProfiles(ps); err != nil {
		return nil, fmt.Errorf("profiles: %w", err)
	}
	return ps, nil
}
