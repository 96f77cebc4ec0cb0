// Package client is a small Go client of kumi's game-server UDP protocol (gameserver/PROTOCOL.md):
// Dial joins a session with a server token, Send relays a payload to the other members, Recv
// returns events (DATA from a member, MOVE/RECONNECT from the server, loss of the server), Leave
// says goodbye. It keeps the membership alive with KEEPALIVE and, by default, follows MOVE by
// itself: it acknowledges with LEAVE, joins the new server with the new token and reports
// EventMoved.
package client
