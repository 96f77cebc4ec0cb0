// Package conformance is a behavioural test suite for Open Match v1 cores. It drives a core only
// through its gRPC API (FrontendService, BackendService, QueryService) and runs its own match
// function and evaluator gRPC servers on the test machine, so the same tests run against kumi's
// embedded core and against a real Open Match v1.8.x deployment.
//
// Target selection (environment):
//
//	KUMI_OM_FRONTEND, KUMI_OM_BACKEND, KUMI_OM_QUERY   host:port of the core's three services.
//	    All unset: each test starts kumi's embedded core on 127.0.0.1:0 (the default; never skips).
//	KUMI_OM_MMF_LISTEN        where the suite's match function listens (default 127.0.0.1:0).
//	KUMI_OM_MMF_HTTP_LISTEN   where the same MMF's HTTP/JSON gateway listens (default 127.0.0.1:0).
//	KUMI_OM_MMF_HOST          host the core dials to reach them (default: the listener's IP).
//	KUMI_OM_EVALUATOR_LISTEN  where the suite's evaluator listens; required for a remote core,
//	                          whose evaluator address (api.evaluator.*) must point here.
//
// The target's timing must be stated so timing tests know what to expect (defaults are what the
// embedded core is started with):
//
//	KUMI_OM_REGISTRATION_INTERVAL         (300ms)   registrationInterval
//	KUMI_OM_PROPOSAL_COLLECTION_INTERVAL  (5s)      proposalCollectionInterval
//	KUMI_OM_PENDING_RELEASE_TIMEOUT       (3s)      pendingReleaseTimeout
//	KUMI_OM_ASSIGNED_DELETE_TIMEOUT       (200ms)   assignedDeleteTimeout
//	KUMI_OM_QUERY_PAGE_SIZE               (10)      queryPageSize
//
// Example, against an Open Match deployed with registrationInterval 250ms,
// proposalCollectionInterval 20s, pendingReleaseTimeout 1m, assignedDeleteTimeout 10m, queryPageSize
// 10000 and its evaluator pointed at this machine's port 50508 (slow: it waits out those timers):
//
//	KUMI_OM_FRONTEND=om:50504 KUMI_OM_BACKEND=om:50505 KUMI_OM_QUERY=om:50503 \
//	KUMI_OM_EVALUATOR_LISTEN=:50508 KUMI_OM_MMF_LISTEN=:50502 KUMI_OM_MMF_HTTP_LISTEN=:51502 \
//	KUMI_OM_MMF_HOST=$(hostname -i) KUMI_OM_REGISTRATION_INTERVAL=250ms \
//	KUMI_OM_PROPOSAL_COLLECTION_INTERVAL=20s KUMI_OM_PENDING_RELEASE_TIMEOUT=1m \
//	KUMI_OM_ASSIGNED_DELETE_TIMEOUT=10m KUMI_OM_QUERY_PAGE_SIZE=10000 \
//	go test -timeout 30m ./openmatch/conformance/
//
// Against a remote core the suite serves one evaluator and one match function (gRPC and HTTP) from
// the first test to the end of the run, as a real Open Match keeps its evaluator connection; each
// call goes to the test running then. Against the embedded core each test has its own core and
// listeners, for the test's life, so tests run in parallel; TestRemoteModeKeepsOneEvaluator runs
// the evaluator tests through the remote path against one long-lived core in a child process, so
// that path is exercised on every run, not only against a real Open Match.
//
// Known difference: Open Match v1.8.1 never deletes expired backfills (its cleanup runs on an
// already cancelled context); TestBackfillExpiry asserts the deletion Open Match intends, and says
// so when it fails against a remote core.
//
// Against a remote core tests run one at a time (the evaluator is shared) and every test scopes
// its tickets with a unique string arg, so leftovers of other runs don't disturb it; tests that
// need a clean core (release-all) only assert on their own tickets.
package conformance
