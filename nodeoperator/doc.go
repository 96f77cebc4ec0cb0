// Package nodeoperator keeps on-prem Kubernetes workers (joined over Tailscale) serving, with
// Compute Engine VMs as fallbacks, and removes those VMs only when no player is left on them.
//
// One level-triggered pass (Operator.Sync) looks at the whole on-prem pool: each Node's kubelet
// signal (Ready condition, kubelet Lease) and its tailnet signal (the peer is in the operator's
// netmap and answers a probe over the tailnet). Only both down past the flap grace is "dark".
// Each node's state machine (Healthy → Suspect → Provisioning → Active → Recovering → Healthy, or
// Failed) lives in a NodeFailover (kumi.dev/v1alpha1) status, so a restarted operator resumes it;
// VMs carry managed-by=kumi and node labels so a VM bought just before a crash is adopted, never
// bought twice. A breaker (max-unhealthy, as Cluster API's MachineHealthCheck) buys nothing when
// many nodes go dark at once. The one path that deletes a VM (removeFallback) re-counts the
// Agones GameServers on its Node first and refuses while any is Allocated or Reserved.
//
// Entry: Run(ctx, log, Config) (the `kumi nodeoperator` subcommand). The tailnet code (tsnet) is
// compiled only into this package and the kumi binary. Docs: nodeoperator/README.md.
package nodeoperator
