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
// Per-player state is small (one entry per live ticket) and rebuilt after a restart: the ticket
// carries its owner under Ticket.extensions[PlayerExtension], so ownership checks need no local
// state, and with a QueryService address the live tickets (and their expiry) are found again.
package frontend
