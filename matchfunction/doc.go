// Package matchfunction is kumi's Open Match match function (openmatch.MatchFunction/Run): for each
// FetchMatches call it queries the profile's pools through the Open Match QueryService and proposes
// matches; the grouping itself is pure functions (Propose, Rendezvous, Matches) with no I/O.
//
// # Profiles
//
// The director sends FetchMatches with a MatchProfile; the match function finds the profile's
// parameters by MatchProfile.name in its own configuration (MatchProfile.extensions are not used, so
// any Open Match client can drive it by name alone). The pools queried are the request's pools, or the
// configured pools when the request has none. Profile.MatchProfile builds the request from the same
// file, so director and match function can share one profiles file:
//
//	profiles:
//	- name: voice              # MatchProfile.name
//	  kind: rendezvous         # everyone with the same chat group meets
//	  group_arg: chat_group    # search_fields.string_args key of the group id
//	  max_members: 16          # session member limit (larger groups are split); keep ≤ the game server's -max-members
//	  pools:
//	  - name: voice
//	    string_equals: {mode: voice}
//	- name: duel
//	  kind: match              # exactly `players` players
//	  players: 2
//	  max_members: 2           # optional, defaults to players
//	  group_by: [mode, region] # string_args that must be equal within a match
//	  skill_arg: skill         # double_args key; omit to ignore skill
//	  skill_window: 100        # largest skill distance from the oldest ticket at zero wait
//	  skill_window_growth: 20  # added per second the oldest ticket has waited
//	  skill_window_max: 1000   # cap (0 = none)
//	  party_arg: party         # string_args key: tickets with the same party id stay together
//	  party_size_arg: party_size # double_args key: a party waits until this many tickets are present
//	  pools:
//	  - name: duel
//	    string_equals: {mode: duel}
//	    double_ranges: [{arg: skill, min: 0, max: 5000}]
//	    tags: [ranked]
//
// JSON with the same field names works too. Unknown fields are refused and every validation error
// names the profile and the field (e.g. `profiles[1] ("duel"): players: must be ≥ 1`).
//
// # What a proposal carries
//
// Every match has a unique id (profile name + xid, unique across concurrent calls), the tickets,
// omext.SessionKind, omext.MaxMembers, omext.Group (rendezvous only) and the default evaluator's
// score (omext.PutScore): the seconds the match's oldest ticket has waited, so that when two
// proposals share a ticket the one with the older tickets wins. Within one Run no two proposals
// share a ticket (tickets are deduplicated, then grouped once), and over gRPC the function says so
// in a response header (openmatch.DisjointProposalsHeader): kumi's core then streams each
// proposal to the caller as it arrives; a real Open Match core ignores the header.
//
// # Late arrivals: the director's group→session map, not Open Match backfill
//
// A voice room must keep receiving members of its chat group long after it started. The match
// function does not try to know about live sessions: every ticket of a group simply becomes a
// match tagged with omext.Group, and the director, which keeps the group→session mapping, places a
// match whose group already has a live session into that session (and opens another session when
// the group exceeds omext.MaxMembers). We chose this over Open Match backfill because:
//   - backfill needs a game server (or the director) to call AcknowledgeBackfill more often than
//     0.8 × pendingReleaseTimeout for the life of every session, and a missed ack silently drops
//     matches; the mapping has no such loop;
//   - backfill is beta in Open Match v1 and absent from Open Match 2; grouping by a tag works with any
//     Open Match core (kumi's embedded one or upstream's);
//   - a session outlives its tickets: once everyone is assigned no ticket or backfill is left in
//     Open Match, yet the session lives on a game server; the director is the component that knows
//     it, so it is the right owner of the mapping.
package matchfunction
