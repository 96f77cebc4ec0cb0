// Package wire encodes and decodes kumi's game-server UDP protocol (version 1), documented in
// gameserver/PROTOCOL.md: JOIN/ACCEPT/REFUSE to enter a session with a server token, then
// authenticated DATA, KEEPALIVE, LEAVE, MOVE and RECONNECT, each carrying a member id, a
// sequence number and a ChaCha20-Poly1305 tag under a per-member key. Parsers never panic and
// return a sentinel error that names why a datagram is dropped; they are fuzzed.
package wire
