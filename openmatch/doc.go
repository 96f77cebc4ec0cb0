// Package openmatch is kumi's embedded Open Match v1.8.1–compatible core: the FrontendService,
// BackendService and QueryService of package openmatch (api/openmatch) served over gRPC, with
// the synchronizer's cycle and evaluator semantics, backfill, and all state in memory.
//
// It reproduces the behaviour documented in shared/reference/openmatch-v1.md §6–§9 (error codes
// and texts included) with three deliberate differences, each for speed or safety:
//   - WatchAssignments is pushed on change instead of polled every 100 ms;
//   - the synchronizer's registration window defaults to 2 ms instead of 250 ms (cycles run back
//     to back, so callers that arrive while one runs still share the next evaluation);
//   - an accepted match whose tickets are already pending or assigned when the cycle commits is
//     dropped, so no ticket can be in two accepted matches even when an MMF proposes tickets it
//     did not get from the query service.
//
// Start serves the three services on their own listeners; Config.MatchFunctions lets a Go caller
// (kumi local) register in-process match functions that FetchMatches calls without a network hop.
package openmatch
