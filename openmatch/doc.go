// Package openmatch is kumi's embedded Open Match v1.8.1–compatible core: the FrontendService,
// BackendService and QueryService of package openmatch (api/openmatch) served over gRPC (one port
// each, plus the gRPC health service), the synchronizer's cycle and evaluator semantics, backfill,
// and all state in memory (no Redis).
//
// It reproduces Open Match v1.8.1's frontend, backend and query behaviour (the synchronizer, evaluator,
// backfill and ticket lifecycle), error codes and texts included, as openmatch/conformance checks,
// with these deliberate differences:
//   - WatchAssignments is pushed on change instead of polled every 100 ms;
//   - the registration window defaults to 2 ms instead of 250 ms: cycles run back to back and
//     every call that arrives while one runs joins the next, so calls still share evaluations;
//   - an accepted match whose tickets are already pending or assigned when the cycle commits is
//     dropped, so no ticket is in two accepted matches even if an MMF proposes tickets it did
//     not get from the query service (or a custom evaluator accepts overlapping matches);
//   - a match function may promise that no two of its proposals share a ticket
//     (pb.DisjointProposalsHeader; kumi's does): in a cycle of that one call, with the default
//     evaluator, its proposals are accepted and streamed as they arrive instead of after the
//     function ends (the evaluator would accept them all; a broken promise is caught by the rule
//     above);
//   - DeleteTicket is synchronous; malformed pools (NaN bounds, min > max, empty names, unknown
//     exclude values) and tickets over max-ticket-bytes are refused with InvalidArgument.
//
// Match functions are called over gRPC or HTTP/JSON (FunctionConfig type REST), or in process:
// Config.MatchFunctions / Server.RegisterMatchFunction register an openmatch.MatchFunctionServer
// under a "host:port" key, and Server.QueryClient gives such a function an in-process
// QueryServiceClient, so an embedding program can skip both network hops (`kumi local` does not:
// it runs the match function as its own gRPC server, like a deployment). The evaluator is built in (the
// default evaluator) or any openmatch.Evaluator service at Config.EvaluatorAddr.
//
// Speed comes from never re-encoding what the core forwards: tickets are stored as their wire
// bytes (query pages are concatenations of them) and proposals from a gRPC match function reach
// the evaluator and the caller as received. See BENCHMARKS.md.
package openmatch
