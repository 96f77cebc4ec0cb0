package director

import (
	"sync"
	"time"
)

// instanceTTL is how long a server's instance is remembered without a report: far beyond any
// report interval, so only servers that are gone are forgotten.
const instanceTTL = 10 * time.Minute

// instances maps each game server to the instance id it last reported (gameserver/PROTOCOL.md):
// the tokens minted for a server name that instance, so a restarted server — a new instance —
// refuses tokens minted for its previous life. Kept apart from the pool because it is a fact
// about the server's process, used only where tokens are minted. The zero value is ready.
type instances struct {
	mu     sync.Mutex
	byName map[string]instanceSeen
	pruned time.Time
}

type instanceSeen struct {
	id string
	at time.Time
}

// set records the instance a server reported (also before the pool knows the server: game
// servers report once before they call Ready, so their first tokens already name them).
func (in *instances) set(server, id string, now time.Time) {
	if server == "" || id == "" {
		return
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.byName == nil {
		in.byName = make(map[string]instanceSeen)
	}
	in.byName[server] = instanceSeen{id: id, at: now}
	if now.Sub(in.pruned) > instanceTTL {
		in.pruned = now
		for n, s := range in.byName {
			if now.Sub(s.at) > instanceTTL {
				delete(in.byName, n)
			}
		}
	}
}

// get returns the instance to name in a token for server, "" (with a warning) when the server
// has not reported one to this director yet — e.g. just after a director restart, or a server
// from a backend whose servers do not report. Such a token is refused by the v2 game server (and
// its client cannot seal a JOIN to it): the player files a new ticket. Game servers report once
// before they call Ready, so a fresh server is never placed before its instance is known.
func (in *instances) get(server string) string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.byName[server].id
}
