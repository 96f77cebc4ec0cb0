// Package install holds what deploys kumi on Kubernetes and its acceptance tests:
//
//   - docker/Dockerfile: the one kumi image (static binary, distroless, nonroot);
//   - helm/kumi: the Helm chart (frontend, match function, director with Lease leader election,
//     embedded Open Match core or the open-match chart, a Fleet of kumi game servers with a
//     Counter FleetAutoscaler, RBAC, NetworkPolicies, PodDisruptionBudgets, Secrets, RuntimeClass
//     kata, ServiceMonitors);
//   - README.md: every chart value, generated from values.yaml by [ValuesDoc].
//
// The tests run helm (scripts/tools.d/25-helm.sh builds it and exports KUMI_HELM) to lint and
// render the chart for a matrix of values, check the rendered objects, and validate the
// repository's skaffold.yaml against skaffold's published schema (testdata/).
package install
