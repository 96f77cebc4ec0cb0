package openmatch

import (
	"bytes"
	"errors"
	"fmt"
	"math"

	pb "github.com/kumi-dev/kumi/api/openmatch"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// proposal is one match proposed by an MMF, reduced to what the core reads (id, ticket ids,
// score, backfill). A proposal that arrived over gRPC keeps its wire bytes and is forwarded to the
// evaluator and the caller as is: the core never decodes or re-encodes the proposal's tickets,
// which is most of the cost of a cycle.
type proposal struct {
	id       string
	tickets  []string
	score    float64 // default evaluator input; −∞ when absent
	badScore bool    // evaluation_input present but not a DefaultEvaluationCriteria
	backfill *pb.Backfill
	msg      *pb.Match // set when the MMF ran in process
	raw      []byte    // the Match's wire bytes when it came over gRPC
	wrapped  []byte    // raw as field 1 of a message, when the RunResponse was exactly that
	// disjoint: its match function promised no other of its proposals in this call shares a
	// ticket (pb.DisjointProposalsHeader), so the cycle may accept it early (cycle.early).
	disjoint bool
}

const scoreType = "openmatch.DefaultEvaluationCriteria"

func proposalFromMatch(m *pb.Match) *proposal {
	p := &proposal{id: m.GetMatchId(), score: math.Inf(-1), backfill: m.GetBackfill(), msg: m}
	p.tickets = make([]string, len(m.GetTickets()))
	for i, t := range m.GetTickets() {
		p.tickets[i] = t.GetId()
	}
	if a, ok := m.GetExtensions()["evaluation_input"]; ok {
		var c pb.DefaultEvaluationCriteria
		if a.UnmarshalTo(&c) != nil {
			p.badScore = true
		} else {
			p.score = c.Score
		}
	}
	return p
}

var errMalformed = errors.New("malformed Match")

// parseProposal reads the fields the core needs from a Match's wire bytes.
func parseProposal(raw []byte) (*proposal, error) {
	p := &proposal{score: math.Inf(-1), raw: raw}
	err := eachField(raw, func(num protowire.Number, typ protowire.Type, v []byte) error {
		if typ != protowire.BytesType {
			return nil
		}
		switch num {
		case 1:
			p.id = string(v)
		case 4:
			id, err := stringField(v, 1)
			if err != nil {
				return fmt.Errorf("tickets[%d]: %w", len(p.tickets), err)
			}
			p.tickets = append(p.tickets, id)
		case 7:
			return p.readExtension(v)
		case 8:
			if p.backfill == nil {
				p.backfill = &pb.Backfill{}
			}
			if err := (proto.UnmarshalOptions{Merge: true}).Unmarshal(v, p.backfill); err != nil {
				return fmt.Errorf("backfill: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("match function sent a %w: %w", errMalformed, err)
	}
	return p, nil
}

// readExtension handles one map entry of Match.extensions; only evaluation_input matters. It
// reads the entry without allocating (500 proposals per cycle, several entries each), with
// anypb.UnmarshalTo's and proto.Unmarshal's outcome (FuzzParseProposal compares them).
func (p *proposal) readExtension(entry []byte) error {
	var key, val []byte
	hasVal := false
	err := eachField(entry, func(num protowire.Number, typ protowire.Type, v []byte) error {
		if typ == protowire.BytesType && num == 1 {
			key = v
		} else if typ == protowire.BytesType && num == 2 {
			val, hasVal = v, true
		}
		return nil
	})
	if err != nil || string(key) != "evaluation_input" {
		return err
	}
	var url, body []byte
	if hasVal {
		err = eachField(val, func(num protowire.Number, typ protowire.Type, v []byte) error {
			if typ == protowire.BytesType && num == 1 {
				url = v
			} else if typ == protowire.BytesType && num == 2 {
				body = v
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	// Like anypb.UnmarshalTo: the type is the URL's last path segment.
	if string(url[bytes.LastIndexByte(url, '/')+1:]) != scoreType {
		p.badScore, p.score = true, math.Inf(-1)
		return nil
	}
	// DefaultEvaluationCriteria is one double, field 1: the last one wins, anything else is an
	// unknown field, and only bytes that do not parse make it fail, as in proto.Unmarshal.
	score := 0.0
	if eachField(body, func(num protowire.Number, typ protowire.Type, v []byte) error {
		if num == 1 && typ == protowire.Fixed64Type {
			x, _ := protowire.ConsumeFixed64(v)
			score = math.Float64frombits(x)
		}
		return nil
	}) != nil {
		p.badScore, p.score = true, math.Inf(-1)
		return nil
	}
	p.badScore, p.score = false, score
	return nil
}

// eachField calls fn for every top-level field of a message; v is the payload of
// length-delimited fields and the encoded value of the others.
func eachField(b []byte, fn func(num protowire.Number, typ protowire.Type, v []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		var v []byte
		if typ == protowire.BytesType {
			v, n = protowire.ConsumeBytes(b)
		} else if n = protowire.ConsumeFieldValue(num, typ, b); n >= 0 {
			v = b[:n]
		}
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if err := fn(num, typ, v); err != nil {
			return err
		}
	}
	return nil
}

// stringField returns the last value of string field num in a message.
func stringField(b []byte, num protowire.Number) (string, error) {
	var s string
	err := eachField(b, func(n protowire.Number, typ protowire.Type, v []byte) error {
		if n == num && typ == protowire.BytesType {
			s = string(v)
		}
		return nil
	})
	return s, err
}

// match returns the proposal as a message (decoding it if it came over gRPC).
func (p *proposal) match() (*pb.Match, error) {
	if p.msg != nil {
		return p.msg, nil
	}
	m := &pb.Match{}
	if err := proto.Unmarshal(p.raw, m); err != nil {
		return nil, fmt.Errorf("match %q: %w", p.id, err)
	}
	return m, nil
}

// wrap returns a message whose field 1 is the proposal (FetchMatchesResponse.match,
// EvaluateRequest.match and RunResponse.proposal all have this shape).
func (p *proposal) wrap() *preEncoded {
	if p.wrapped != nil {
		return &preEncoded{p.wrapped}
	}
	b := make([]byte, 0, len(p.raw)+6)
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	return &preEncoded{protowire.AppendBytes(b, p.raw)}
}
