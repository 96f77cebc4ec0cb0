package openmatch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/kumi-dev/kumi/internal/tracing"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	pb "github.com/kumi-dev/kumi/api/openmatch"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
)

// mmfClients runs match functions: in-process ones from Config.MatchFunctions, otherwise over
// gRPC with one cached connection per address (like upstream's client cache).
type mmfClients struct {
	inproc map[string]pb.MatchFunctionServer
	mu     sync.Mutex
	conns  map[string]*grpc.ClientConn
	http   *http.Client // REST match functions
}

func newMMFClients(inproc map[string]pb.MatchFunctionServer, restTimeout time.Duration) *mmfClients {
	m := &mmfClients{inproc: make(map[string]pb.MatchFunctionServer), conns: make(map[string]*grpc.ClientConn),
		http: &http.Client{Timeout: restTimeout, Transport: &http.Transport{MaxIdleConnsPerHost: 16, IdleConnTimeout: time.Minute}}}
	for k, v := range inproc {
		m.inproc[k] = v
	}
	return m
}

func (m *mmfClients) register(addr string, f pb.MatchFunctionServer) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if f == nil {
		delete(m.inproc, addr)
		return
	}
	m.inproc[addr] = f
}

func (m *mmfClients) local(addr string) (pb.MatchFunctionServer, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f, ok := m.inproc[addr]
	return f, ok
}

func (m *mmfClients) close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, c := range m.conns {
		c.Close()
		delete(m.conns, k)
	}
	m.http.CloseIdleConnections()
}

func (m *mmfClients) conn(addr string) (*grpc.ClientConn, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c, ok := m.conns[addr]; ok {
		return c, nil
	}
	c, err := grpc.NewClient(addr, append(tracing.DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		return nil, fmt.Errorf("match function %s: %w", addr, err)
	}
	m.conns[addr] = c
	return c, nil
}

// run calls the match function fc names with profile and passes every proposal to emit; it
// returns the first error of the function or of emit. Proposals from a gRPC MMF are received
// undecoded (see proposal).
func (m *mmfClients) run(ctx context.Context, fc *pb.FunctionConfig, profile *pb.MatchProfile, emit func(*proposal) error) error {
	addr := net.JoinHostPort(fc.GetHost(), strconv.Itoa(int(fc.GetPort())))
	req := &pb.RunRequest{Profile: profile}
	switch fc.GetType() {
	case pb.FunctionConfig_GRPC:
	case pb.FunctionConfig_REST:
		return m.runREST(ctx, addr, req, emit)
	default:
		return fmt.Errorf("match function type %d: provided match function type is not supported", fc.GetType())
	}
	if srv, ok := m.local(addr); ok {
		return srv.Run(req, &inprocStream{ctx: ctx, emit: emit})
	}
	c, err := m.conn(addr)
	if err != nil {
		return err
	}
	stream, err := c.NewStream(ctx, &grpc.StreamDesc{StreamName: "Run", ServerStreams: true}, pb.MatchFunction_Run_FullMethodName, grpc.ForceCodecV2(newCodec()))
	if err != nil {
		return err
	}
	if err := stream.SendMsg(req); err != nil {
		return err
	}
	if err := stream.CloseSend(); err != nil {
		return err
	}
	first, disjoint := true, false
	for {
		var resp rawMsg
		err := stream.RecvMsg(&resp)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if first {
			// The header came with (or before) the first message, so this does not block.
			first = false
			if md, err := stream.Header(); err == nil {
				v := md.Get(pb.DisjointProposalsHeader)
				disjoint = len(v) == 1 && v[0] == "1"
			}
		}
		raw, err := fieldBytes(resp.b, 1)
		if err != nil {
			return fmt.Errorf("match function sent a malformed RunResponse: %w", err)
		}
		if raw == nil {
			return errors.New("match function sent a RunResponse without a proposal")
		}
		p, err := parseProposal(raw)
		if err != nil {
			return err
		}
		if protowire.SizeTag(1)+protowire.SizeBytes(len(raw)) == len(resp.b) {
			// RunResponse, EvaluateRequest and FetchMatchesResponse all carry the Match as field 1.
			p.wrapped = resp.b
		}
		p.disjoint = disjoint
		if err := emit(p); err != nil {
			return err
		}
	}
}

// runREST calls a match function through its HTTP/JSON gateway (POST /v1/matchfunction:run, the
// response a stream of {"result": RunResponse} or {"error": Status} JSON objects), like upstream's
// REST client, whole response bounded by Config.MMFRESTTimeout.
func (m *mmfClients) runREST(ctx context.Context, addr string, req *pb.RunRequest, emit func(*proposal) error) error {
	body, err := protojson.Marshal(req)
	if err != nil {
		return fmt.Errorf("match function (REST) %s: encode request: %w", addr, err)
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/v1/matchfunction:run", bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("match function (REST) %s: %w", addr, err)
	}
	hreq.Header.Set("Content-Type", "application/json")
	resp, err := m.http.Do(hreq)
	if err != nil {
		return fmt.Errorf("match function (REST) %s: %w", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("match function (REST) %s answered HTTP %d: %s", addr, resp.StatusCode, bytes.TrimSpace(msg))
	}
	dec := json.NewDecoder(resp.Body)
	for {
		var item struct {
			Result json.RawMessage `json:"result"`
			Error  *struct {
				Code    int32  `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := dec.Decode(&item); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return fmt.Errorf("match function (REST) %s: malformed response: %w", addr, err)
		}
		if item.Error != nil {
			return status.Error(codes.Code(item.Error.Code), item.Error.Message)
		}
		var rr pb.RunResponse
		if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(item.Result, &rr); err != nil {
			return fmt.Errorf("match function (REST) %s: malformed RunResponse: %w", addr, err)
		}
		if rr.Proposal == nil {
			return errors.New("match function sent a RunResponse without a proposal")
		}
		if err := emit(proposalFromMatch(rr.Proposal)); err != nil {
			return err
		}
	}
}

// fieldBytes returns the last length-delimited field num of a message (nil if absent).
func fieldBytes(b []byte, num protowire.Number) ([]byte, error) {
	var out []byte
	err := eachField(b, func(n protowire.Number, typ protowire.Type, v []byte) error {
		if n == num && typ == protowire.BytesType {
			out = v
			if out == nil {
				out = []byte{}
			}
		}
		return nil
	})
	return out, err
}

// inprocStream is the server stream an in-process match function writes to.
type inprocStream struct {
	ctx  context.Context
	emit func(*proposal) error
}

func (s *inprocStream) Send(r *pb.RunResponse) error {
	if err := s.ctx.Err(); err != nil {
		return err
	}
	if r.GetProposal() == nil {
		return errors.New("match function sent a RunResponse without a proposal")
	}
	return s.emit(proposalFromMatch(r.Proposal))
}
func (s *inprocStream) SetHeader(metadata.MD) error  { return nil }
func (s *inprocStream) SendHeader(metadata.MD) error { return nil }
func (s *inprocStream) SetTrailer(metadata.MD)       {}
func (s *inprocStream) Context() context.Context     { return s.ctx }
func (s *inprocStream) SendMsg(m any) error {
	r, ok := m.(*pb.RunResponse)
	if !ok {
		return fmt.Errorf("in-process match function sent %T, want *openmatch.RunResponse", m)
	}
	return s.Send(r)
}
func (s *inprocStream) RecvMsg(any) error { return io.EOF }
