// Package client is kumi's Go client library for game backends, bots and load generators: the whole
// player flow, token → ticket → assignment → UDP session. examples/client runs it from the command
// line, `kumi local`'s demo crowd and `kumi bench e2e` run it many times in one process.
//
//  1. a player JWT: given, or a dev token minted with a local key (like `kumi token issue`);
//  2. CreateTicket on kumi's frontend (gRPC kumi.client.v1.Frontend, bearer token), or POST
//     /v1/tickets on its HTTP/JSON API when Config.FrontendHTTP is set;
//  3. WatchAssignment (or GET /v1/tickets/{id}?wait= long polls) until the ticket is assigned
//     (address, session id, server token);
//  4. join the game server over UDP with the server token through gameserver/client (JOIN
//     retransmitted until ACCEPT or REFUSE; MOVE followed by the client itself);
//  5. send voice-like DATA frames (default 80 bytes every 20 ms, i.e. 50/s, like 32 kbit/s Opus) and
//     count the frames other members' clients send, relayed by the server;
//  6. follow MOVE (LEAVE to acknowledge, JOIN the new address with the new token) and RECONNECT
//     (LEAVE, then a new ticket);
//  7. LEAVE at the end and report timings: ticket→assignment, assignment→ACCEPT, ACCEPT→first
//     relayed frame, and one-way frame latency between players on this machine.
package client
