package openmatch

// DisjointProposalsHeader is response header metadata (value "1") a match function may send on
// Run to promise that no two of that call's proposals share a ticket. It is not part of Open Match:
// a real Open Match core ignores it. kumi's core (openmatch/sync.go) then accepts such a proposal
// as it arrives when the cycle holds that call alone, has closed its registration window and uses
// the default evaluator, because with disjoint proposals that evaluator accepts every one of them
// anyway; matches then stream to the caller while the function is still sending. kumi's match
// function sends it (its proposals come from one grouping of deduplicated tickets).
const DisjointProposalsHeader = "kumi-disjoint-proposals"
