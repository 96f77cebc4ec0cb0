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
// # State
//
// Per-player state is small (one entry per live ticket) and rebuilt after a restart: the ticket
// carries its owner under Ticket.extensions[PlayerExtension], so ownership checks need no local
// state, and with om-query-addr the live tickets (and their expiry) are found again. One live
// ticket per player holds per frontend process; several replicas need players routed to one
// replica (or accept that a player racing two replicas can hold two tickets).
package frontend
