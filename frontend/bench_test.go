package frontend

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kumi-dev/kumi/api/client"
	pb "github.com/kumi-dev/kumi/api/openmatch"
	"google.golang.org/grpc/metadata"
)

// reportLatency adds p50/p99 (ms) of lat to b's output.
func reportLatency(b *testing.B, prefix string, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))]) / 1e6 }
	b.ReportMetric(q(0.50), prefix+"p50-ms")
	b.ReportMetric(q(0.99), prefix+"p99-ms")
}

// BenchmarkCreateTicket is CreateTicket over gRPC through the frontend (JWT check, attribute
// check, one-live-ticket bookkeeping, expiry queue) into the embedded core, one new player per
// call, from many concurrent clients; "direct" is the baseline: the same tickets created straight
// in the core's FrontendService, with no frontend. tickets/s is the throughput; p50/p99 the
// per-call latency; tickets/cpu-s divides by the CPU time of the whole process (load generator,
// frontend and core), which does not depend on what else the shared machine is running.
func BenchmarkCreateTicket(b *testing.B) {
	for _, conc := range []int{16, 64} {
		for _, via := range []string{"frontend", "http", "direct"} {
			b.Run("via="+via+"/clients="+strconv.Itoa(conc), func(b *testing.B) {
				e := newEnv(b, oneSource)
				var create func(i int) error
				switch via {
				case "frontend":
					ctxs := make([]context.Context, b.N)
					for i := range ctxs {
						tok, err := e.signer.PlayerToken("bench-"+strconv.Itoa(i), time.Hour)
						if err != nil {
							b.Fatal(err)
						}
						ctxs[i] = metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok)
					}
					req := &client.CreateTicketRequest{Attributes: attrs("mode", "duel", "region", "eu", "skill", 1200.0)}
					create = func(i int) error { _, err := e.api.CreateTicket(ctxs[i], req); return err }
				case "http":
					toks := make([]string, b.N)
					for i := range toks {
						tok, err := e.signer.PlayerToken("bench-"+strconv.Itoa(i), time.Hour)
						if err != nil {
							b.Fatal(err)
						}
						toks[i] = "Bearer " + tok
					}
					hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conc}}
					b.Cleanup(hc.CloseIdleConnections)
					body := []byte(`{"attributes":{"mode":"duel","region":"eu","skill":1200}}`)
					create = func(i int) error {
						req, err := http.NewRequest("POST", e.base+"/v1/tickets", bytes.NewReader(body))
						if err != nil {
							return err
						}
						req.Header.Set("Authorization", toks[i])
						resp, err := hc.Do(req)
						if err != nil {
							return err
						}
						_, err = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode != http.StatusCreated {
							return fmt.Errorf("status %d", resp.StatusCode)
						}
						return err
					}
				case "direct":
					create = func(i int) error {
						_, err := e.om.CreateTicket(context.Background(), &pb.CreateTicketRequest{Ticket: &pb.Ticket{SearchFields: &pb.SearchFields{
							StringArgs: map[string]string{"mode": "duel", "region": "eu"}, DoubleArgs: map[string]float64{"skill": 1200}}}})
						return err
					}
				}
				runConcurrent(b, conc, create)
			})
		}
	}
}

// runConcurrent runs create(0..b.N-1) from conc goroutines and reports throughput and latency;
// it returns tickets per CPU-second of the process.
func runConcurrent(b *testing.B, conc int, create func(i int) error) float64 {
	var next atomic.Int64
	lats := make([][]time.Duration, conc)
	var wg sync.WaitGroup
	b.ResetTimer()
	cpu0 := cpuTime()
	start := time.Now()
	for w := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				t0 := time.Now()
				if err := create(int(i)); err != nil {
					b.Error(err)
					return
				}
				lats[w] = append(lats[w], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	el, cpu := time.Since(start), cpuTime()-cpu0
	b.StopTimer()
	b.ReportMetric(float64(b.N)/el.Seconds(), "tickets/s")
	b.ReportMetric(float64(b.N)/cpu.Seconds(), "tickets/cpu-s")
	reportLatency(b, "", slices.Concat(lats...))
	return float64(b.N) / cpu.Seconds()
}

// BenchmarkAssignmentToClient measures how long after AssignTickets a client that is already
// waiting (gRPC WatchAssignment, or HTTP server-sent events) receives its assignment.
// "call-" figures start when AssignTickets is called, "ret-" when it has returned.
func BenchmarkAssignmentToClient(b *testing.B) {
	for _, transport := range []string{"grpc", "sse"} {
		b.Run(transport, func(b *testing.B) {
			e := newEnv(b, oneSource)
			var fromCall, fromReturn []time.Duration
			for i := 0; b.Loop(); i++ {
				player := "w" + strconv.Itoa(i)
				ctx := e.as(player)
				ct, err := e.api.CreateTicket(ctx, &client.CreateTicketRequest{Attributes: attrs("mode", "duel")})
				if err != nil {
					b.Fatal(err)
				}
				var recv func() (*client.Ticket, error)
				var closeFn func()
				switch transport {
				case "grpc":
					wctx, cancel := context.WithCancel(ctx)
					stream, err := e.api.WatchAssignment(wctx, &client.WatchAssignmentRequest{TicketId: ct.GetId()})
					if err != nil {
						b.Fatal(err)
					}
					recv, closeFn = stream.Recv, cancel
				case "sse":
					req, _ := http.NewRequest("GET", e.base+"/v1/tickets/"+ct.GetId()+"/events", nil)
					req.Header.Set("Authorization", "Bearer "+e.token(player))
					resp, err := e.hc.Do(req)
					if err != nil {
						b.Fatal(err)
					}
					ev := &sse{r: bufio.NewReader(resp.Body)}
					recv = func() (*client.Ticket, error) {
						_, data, err := ev.next()
						if err != nil {
							return nil, err
						}
						return decodeTicket(b, []byte(data)), nil
					}
					closeFn = func() { resp.Body.Close() }
				}
				if _, err := recv(); err != nil { // SEARCHING
					b.Fatal(err)
				}
				// The client is waiting once the frontend's upstream watch is registered.
				for e.fe.svc.watches.refs(ct.GetId()) == 0 {
					time.Sleep(50 * time.Microsecond)
				}
				t0 := time.Now()
				if _, err := e.backend.AssignTickets(context.Background(), &pb.AssignTicketsRequest{Assignments: []*pb.AssignmentGroup{{
					TicketIds: []string{ct.GetId()}, Assignment: assignment("10.0.0.1:7777", "s", "tok", time.Now().Add(time.Minute))}}}); err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				got, err := recv()
				t2 := time.Now()
				if err != nil || got.GetState() != client.Ticket_ASSIGNED {
					b.Fatalf("%v %v", got, err)
				}
				fromCall, fromReturn = append(fromCall, t2.Sub(t0)), append(fromReturn, t2.Sub(t1))
				closeFn()
			}
			reportLatency(b, "call-", fromCall)
			reportLatency(b, "ret-", fromReturn)
		})
	}
}

// cpuTime is the user+system CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// oneSource lifts the per-address limit (Config.SourceRate): every benchmark client dials from
// 127.0.0.1, which the default limit would cap at 50 requests/s.
func oneSource(c *Config) { c.SourceRate = 0 }
