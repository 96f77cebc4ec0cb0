// Package kubetest starts a real, isolated Kubernetes control plane (kube-apiserver + etcd) for a
// test and tears it down with the test. The binaries come from hack/localkube, a separate Go
// module built from the Go module proxy by scripts/localkube.sh and found through
// KUBEBUILDER_ASSETS; controller-runtime's envtest runs them. When KUBEBUILDER_ASSETS is unset,
// Start runs scripts/localkube.sh itself (a cold build takes about ten minutes, later ones are
// instant), so `go test ./somepkg` works without `make test`. It never skips: a control plane
// that cannot be built or started fails the test with the reason.
//
// The control plane binds 127.0.0.1 only, on ports envtest picks, and authenticates clients with
// a client certificate envtest generates per run; nothing outside this machine can reach it, and
// on this machine only holders of that certificate (the test) can.
//
// AgonesCRDs are kumi's test fixtures modelled on Agones' published GameServer, GameServerSet,
// Fleet and FleetAutoscaler schemas (not Agones' own files); install them with WithAgonesCRDs.
package kubetest
