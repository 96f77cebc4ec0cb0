package matchfunction

import "github.com/kumi-dev/kumi/internal/omext"

// GameAttribute is the ticket string attribute naming the game (an uploaded build's project) a
// player queues for; GameProfile's pool filters on it, so each game's players meet only each other.
const GameAttribute = "game"

// GameProfile is the match profile of one game served on dedicated servers: matches of exactly
// players tickets whose game attribute is game, one match per server (the director's dedicated
// placement, director/dedicated.go).
func GameProfile(game string, players int) Profile {
	name := "game-" + game
	return Profile{
		Name: name, Kind: omext.KindMatch, Players: players, MaxMembers: players,
		Pools: []PoolSpec{{Name: name, StringEquals: map[string]string{GameAttribute: game}}},
	}
}
