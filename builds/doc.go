// Package builds accepts, validates and stores uploaded dedicated-server builds (Unreal Linux
// servers), the "dedicated servers as a service" half of kumi.
//
// A studio's developer (a JWT with audience "kumi-builds", a "scope" claim builds:read or
// builds:write and a "tenant" claim naming the studio) POSTs a .tar.gz or .zip. The archive is
// validated while it streams in (size, unpacked size, entry count, compression ratio, path
// traversal, links escaping the root, device and fifo entries, setuid/setgid bits stripped, and a
// Linux x86-64 ELF at <Project>/Binaries/Linux/<Project>Server or a declared entrypoint), written
// to a temporary object at the same time, and published under its sha256 only once it passed:
// nothing half-written is ever visible and re-uploading the same bytes is idempotent. Storage is a
// gocloud.dev/blob bucket (file:// locally, gs:// or s3:// in production) holding each build's
// manifest beside its bytes, so the bucket is the only source of truth and the API keeps no state.
//
// Who reaches the API: developers, over TLS terminated in front of it; player tokens (audience
// "kumi") and server tokens are refused, and every key the API touches is prefixed by the tenant
// from the verified token, so a studio never sees another's builds. The runner
// (`kumi gameserver wrap`, gameserver/wrap) reads builds straight from the bucket by sha256 and
// checks the digest again before unpacking with the same validator.
//
// Fleets (fleet.go) renders the Agones Fleet, and the NetworkPolicy, that run one build version
// under the Kata runtime on Kubernetes.
package builds
