// Package frontend is kumi's player-facing matchmaking API (api/client, kumi.client.v1.Frontend),
// served over gRPC and as HTTP/JSON (long-poll and server-sent events), in front of any Open Match
// v1 FrontendService.
//
// Open Match has no authentication and never expires a waiting ticket; the frontend adds what a
// public API needs: the player id comes from a verified player JWT (never from the request), search
// attributes are checked against a typed allow-list, a player has one live ticket, per-player and
// global rate limits and body limits apply, tickets never assigned are deleted after a lifetime, and
// a player can only ever read or cancel their own ticket. The assignment the director writes
// (Assignment.connection plus the omext session / server-token keys) is handed to the client.
//
// # HTTP/JSON
//
// Every call carries "Authorization: Bearer <player JWT>". Bodies and responses are protojson
// with proto field names; attribute values are plain JSON (string, number, bool).
//
//	POST   /v1/tickets                {"attributes": {"mode": "duel", "skill": 1450}}
//	       201 the new ticket · 200 the player's live ticket (same attributes: idempotent retry)
//	       409 the player has a live ticket with other attributes (cancel it first)
//	GET    /v1/tickets/{id}           the ticket; ?wait=30s (or ?wait=30) long-polls until assigned
//	                                  or the wait ends (capped by max-wait), then returns it
//	GET    /v1/tickets/{id}/events    text/event-stream: "event: ticket" now and once assigned,
//	                                  then the stream ends; "event: error" if the ticket goes away
//	DELETE /v1/tickets/{id}           200 {} (also for a ticket already gone)
//	GET    /healthz                   200 ok
//
// {id} may be "current", the caller's live ticket. A ticket is {"id", "state": "SEARCHING" |
// "ASSIGNED", "attributes", "create_time", "expire_time", "assignment": {"address": "ip:port",
// "session_id", "server_token", "server_token_expire_time"}}. Errors are
// {"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": "...", "field": "attributes.skill"}}
// with 400 (bad attribute or parameter, field named), 401 (missing or invalid token, with the
// reason), 404 (no such ticket — also another player's), 409, 413 (body over max-body-bytes), 429
// (rate limit or too many open watches; Retry-After in seconds), 503 (Open Match unreachable).
// gRPC returns the same codes (InvalidArgument with errdetails.BadRequest, ResourceExhausted with
// errdetails.RetryInfo and a retry-after header).
//
// # Authenticated attributes
//
// Each allowed attribute is either client-chosen (mode, region, game, ranked: a player may pick any
// allowed value) or comes from a claim of the verified player token, written name:type@claim in
// the attributes flag. The default (DefaultAttributes) sources the attributes that decide who
// meets whom:
//
//	chat_group:string@groups   the value must be one of the token's "groups" (a string or list of strings)
//	party:string@party         the value must equal the token's "party"
//	skill:number@skill         the value must equal the token's "skill"
//
// A value the claim does not allow is refused with 403 PERMISSION_DENIED (gRPC PermissionDenied),
// naming the attribute and the claim but never the granted values. So knowing a guild's chat group
// id is not enough to sit in its voice room: the identity provider must have put it in the token.
//
// The identity provider (the game's login service) issues these as ordinary private claims of the
// player JWT, next to sub/iss/aud/exp, from its own records — guild membership, the party the
// player accepted an invite to, the rating service's skill:
//
//	{"sub": "player-42", "iss": "https://login.example.com", "aud": "kumi", "exp": 1767225600,
//	 "groups": ["guild-7", "raid-2"], "party": "p-91f", "skill": 1450}
//
// Auth0 and Okta add them with an "action"/"token hook", Keycloak with a protocol mapper (a
// group-membership mapper gives "groups" directly), Firebase with custom claims. Claims change as
// often as tokens are re-issued: keep token lifetimes short (minutes) so leaving a guild takes
// effect, and re-issue a token when a party forms. For local use `kumi token issue --groups
// guild-7,raid-2 --claims '{"party":"p-91f","skill":1450}'` mints such a token; `kumi local`'s demo
// crowd and examples/client mint their own (player.DevClaims). Only the claims the allow-list
// names are decoded; the frontend's token cache keeps them with the player id.
//
// # State
//
// Per-player state is small (one entry per live ticket) and rebuilt after a restart: the ticket
// carries its owner under Ticket.extensions[PlayerExtension], so ownership checks need no local
// state, and with om-query-addr the live tickets (and their expiry) are found again. One live
// ticket per player holds per frontend process with the memory store, and across every replica
// sharing a Redis with store-redis-addr (store.go).
//
// When the Open Match core restarts and loses its tickets (kumi's embedded core keeps them in
// memory), every player waiting on a watch (gRPC WatchAssignment, SSE, long-poll) has their ticket
// filed again, once, with the same search fields and a fresh seal; the old id stays an alias of the
// new one in that replica (refile.go, kumi_frontend_tickets_refiled_total). A player not watching at
// that moment finds the ticket gone on their next call and files a new one.
package frontend
