// Package wire encodes and decodes kumi's game-server UDP protocol (version 2), documented in
// gameserver/PROTOCOL.md: a JOIN/COOKIE/ACCEPT/REFUSE handshake (X25519 to the server instance's
// key, the token sealed inside, a stateless address cookie), then DATA, KEEPALIVE, LEAVE, MOVE
// and RECONNECT, each encrypted and authenticated with ChaCha20-Poly1305 under per-member session
// keys, with a sequence number against replays. Parsers never panic and return a sentinel error
// that names why a datagram is dropped; they are fuzzed.
package wire
