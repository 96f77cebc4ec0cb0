// Package local runs the whole kumi product on one machine with no cluster: the embedded Open
// Match core, the match function, the frontend, the director and a local fleet of real `kumi
// gameserver` processes (each with its own local Agones SDK endpoint), all on 127.0.0.1, and by
// default a demo crowd of simulated players (the client package) who get tokens, are matched
// into voice groups and duels, join over UDP, talk, leave, arrive late to their group's session,
// and ride through a scale-in that moves their sessions to another server while they talk.
//
// With -build (build.go) it instead uploads a dedicated-server build to an in-process builds API,
// serves the game's matches on `kumi gameserver wrap` processes under gVisor (one match per
// server), and plays a few matches whose players the build's wrappers admit.
//
// Every component runs in this process except the game servers, which are child processes as in
// production; they report to the director over its control API and are stopped with the process.
package local
