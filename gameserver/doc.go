// Package gameserver is kumi's shared game server: one UDP port hosting many independent sessions
// (voice rooms or small matches). Clients join a session with a server token minted by the
// director for this server instance and sealed to the instance's X25519 key (verified here:
// signature, audience = this server, instance = this process, expiry, single use); after that
// every datagram is encrypted and authenticated with per-member session keys (protocol v2:
// PROTOCOL.md, codec: gameserver/wire). DATA is relayed to the other members of the sender's session with batched
// socket I/O (recvmmsg/sendmmsg). The server reports its load to the director
// (kumi.control.v1.Director), keeps the Agones Counter "sessions" current through the SDK
// interface, and on drain refuses new members, waits a grace period, then moves each remaining
// session through the director (MOVE to every member) or, failing that, sends RECONNECT; once
// empty it calls Shutdown.
package gameserver
