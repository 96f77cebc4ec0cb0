// Package wrap is `kumi gameserver wrap`: it runs an unmodified dedicated server from an uploaded
// build (package builds) as one Agones game server, so the game needs no kumi or Agones code.
//
// It fetches the build by sha256 from the builds bucket, checks the digest, unpacks it with the
// upload's validator into an empty directory, and starts the entrypoint with `-port=<game port>
// -log`. It speaks the Agones SDK for the server: Ready once the server's UDP port is bound, Health
// while it lives, Shutdown when it exits, a label with the build version and annotations with its
// sha256 and project. SIGTERM is forwarded with a grace, then the server is killed. Players are
// admitted by the wrapper: Unreal's PreLogin POSTs the `?token=` it received to $KUMI_ADMIT_URL
// (`POST /v1/admit {"token":"..."}`), the wrapper verifies the server token (signature, audience =
// this server, the server's one session — pinned by the first admission — and single use by jti)
// and answers {"player_id","session_id"}, or 403/409 with the reason.
//
// # Sandbox
//
// An uploaded build is a stranger's binary. Locally (kumi local, tests) it runs under gVisor:
// `runsc run` from an OCI bundle whose root holds only the build (read-only, at /game), the
// configured library directories read-only, an in-memory overlay for writes, uid 65534 with no
// capabilities, no_new_privs and RLIMIT_NPROC. `-sandbox=none` runs it as a plain process and is
// refused unless `-unsafe-no-sandbox` is given (development only).
//
// Network, and why this shape: the server must receive players' UDP and reach the admit endpoint,
// and nothing else. runsc's own sandbox network (netstack behind a veth pair with NAT) would need
// routes, iptables egress rules and an address plan per server, each a way to get it wrong;
// --network=none leaves no way in at all. Instead the wrapper creates a network namespace holding
// only loopback (no interface, no route: egress is impossible by construction, not by a rule) and
// starts runsc in it with --network=host, so the server's sockets are host sockets of that empty
// namespace. The wrapper, which keeps one foot in each namespace (a locked OS thread), creates the
// admit listener on that loopback and relays UDP: the public game port on the host network, and
// one socket per player address inside the namespace, so the server still sees one peer per
// player. The cost is one user-space hop per datagram.
//
// Who reaches what: players reach the public game port (relayed to the server only); only the
// sandboxed server reaches the admit endpoint (it listens inside the namespace); the server
// reaches nothing on the host or the network (the director's control API, metadata servers and
// other pods included). If the wrapper dies, the kernel kills runsc (Pdeathsig) and with it every
// process of the sandbox, orphans included.
//
// On Kubernetes the same wrapper runs in the pod under the Kata runtime; builds.RenderFleet makes
// the Fleet and NetworkPolicy (the pod network is then the boundary, so -sandbox=none is the
// setting there, with Kata as the sandbox).
package wrap
