// Package omext names the Open Match extension keys kumi's components exchange, and packs and
// unpacks their values, so the match function, director and frontend agree on one contract.
//
// Open Match forwards extensions untouched (they are google.protobuf.Any); only
// Match.extensions["evaluation_input"] is read by the core's default evaluator.
package omext

import (
	"fmt"
	"time"

	"github.com/kumi-dev/kumi/api/openmatch"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Keys on Ticket.extensions, written by the frontend; Open Match forwards them untouched.
const (
	// Player (StringValue) is the id of the player who owns the ticket: the subject of their JWT.
	// The director reads it to mint each player's server token; tickets without it use the ticket id.
	Player = "kumi.player"
	// Attributes (google.protobuf.Struct) is the attributes exactly as the client sent them, for
	// GetTicket and for the one-live-ticket comparison after a restart.
	Attributes = "kumi.attributes"
)

// Keys on Match.extensions, written by the match function and read by the director.
const (
	// EvaluationInput is the default evaluator's score (openmatch.DefaultEvaluationCriteria).
	EvaluationInput = "evaluation_input"
	// Group is the rendezvous key (StringValue): every match carrying the same group must be placed in
	// the same session; the director keeps the group→session mapping.
	Group = "kumi.group"
	// SessionKind is "rendezvous" or "match" (StringValue).
	SessionKind = "kumi.kind"
	// MaxMembers is the session's member limit (Int64Value) from the match function's profile.
	MaxMembers = "kumi.max_members"
)

// Keys on Ticket.extensions, written by the frontend and read by the director.
const (
	// Seal (StringValue) proves the ticket came through a kumi frontend: an HMAC over its player,
	// search fields and creation time (internal/ticketseal). The director assigns no ticket without it.
	Seal = "kumi.seal"
)

// Key on Ticket.extensions (written by the frontend) and Assignment.extensions (written by the
// director), so a player's trace crosses any Open Match core, which forwards extensions untouched.
const (
	// TraceParent (StringValue) is a W3C traceparent (internal/tracing): on a ticket, the frontend's
	// CreateTicket span; on an assignment, the director's placement span for that ticket. Absent
	// when tracing is off.
	TraceParent = "kumi.traceparent"
)

// Keys on Assignment.extensions, written by the director and read by the frontend.
const (
	// Session is the session id the player joins (StringValue).
	Session = "kumi.session"
	// ServerToken is the signed server token the game server admits (StringValue).
	ServerToken = "kumi.server_token"
	// TokenExpiry is when ServerToken stops being accepted (Timestamp).
	TokenExpiry = "kumi.token_expiry"
)

// Session kinds carried under SessionKind.
const (
	KindRendezvous = "rendezvous"
	KindMatch      = "match"
)

// PutString stores s under key in m (allocating m if nil) and returns m.
func PutString(m map[string]*anypb.Any, key, s string) map[string]*anypb.Any {
	if a, ok := packString(s); ok {
		return set(m, key, a)
	}
	return put(m, key, wrapperspb.String(s))
}

// PutInt stores v under key in m and returns m.
func PutInt(m map[string]*anypb.Any, key string, v int64) map[string]*anypb.Any {
	return set(m, key, packInt(v))
}

// PutTime stores t under key in m and returns m.
func PutTime(m map[string]*anypb.Any, key string, t time.Time) map[string]*anypb.Any {
	return put(m, key, timestamppb.New(t))
}

// PutScore stores the default evaluator's score in m and returns m.
func PutScore(m map[string]*anypb.Any, score float64) map[string]*anypb.Any {
	return set(m, EvaluationInput, packScore(score))
}

func set(m map[string]*anypb.Any, key string, a *anypb.Any) map[string]*anypb.Any {
	if m == nil {
		m = make(map[string]*anypb.Any)
	}
	m[key] = a
	return m
}

func put(m map[string]*anypb.Any, key string, v interface {
	ProtoReflect() protoreflect.Message
}) map[string]*anypb.Any {
	a, err := anypb.New(v)
	if err != nil {
		// Only unregistered message types and strings that are not UTF-8 fail to pack; the types
		// above are all well-known, and kumi's strings come from JSON (JWT claims, requests),
		// which decodes to valid UTF-8.
		panic(fmt.Sprintf("omext: pack %s: %v", key, err))
	}
	return set(m, key, a)
}

// String reads a StringValue under key. ok is false when the key is absent; err is set when the
// value is present but not a StringValue.
func String(m map[string]*anypb.Any, key string) (s string, ok bool, err error) {
	a, ok := m[key]
	if !ok {
		return "", false, nil
	}
	if s, ok := unpackString(a); ok {
		return s, true, nil
	}
	var v wrapperspb.StringValue
	if err := a.UnmarshalTo(&v); err != nil {
		return "", true, fmt.Errorf("extension %q: want google.protobuf.StringValue: %w", key, err)
	}
	return v.GetValue(), true, nil
}

// Int reads an Int64Value under key, like String.
func Int(m map[string]*anypb.Any, key string) (v int64, ok bool, err error) {
	a, ok := m[key]
	if !ok {
		return 0, false, nil
	}
	if v, ok := unpackInt(a); ok {
		return v, true, nil
	}
	var w wrapperspb.Int64Value
	if err := a.UnmarshalTo(&w); err != nil {
		return 0, true, fmt.Errorf("extension %q: want google.protobuf.Int64Value: %w", key, err)
	}
	return w.GetValue(), true, nil
}

// Time reads a Timestamp under key, like String.
func Time(m map[string]*anypb.Any, key string) (t time.Time, ok bool, err error) {
	a, ok := m[key]
	if !ok {
		return time.Time{}, false, nil
	}
	var ts timestamppb.Timestamp
	if err := a.UnmarshalTo(&ts); err != nil {
		return time.Time{}, true, fmt.Errorf("extension %q: want google.protobuf.Timestamp: %w", key, err)
	}
	return ts.AsTime(), true, nil
}

// Score reads the default evaluator's score, like String.
func Score(m map[string]*anypb.Any) (score float64, ok bool, err error) {
	a, ok := m[EvaluationInput]
	if !ok {
		return 0, false, nil
	}
	if v, ok := unpackScore(a); ok {
		return v, true, nil
	}
	var c openmatch.DefaultEvaluationCriteria
	if err := a.UnmarshalTo(&c); err != nil {
		return 0, true, fmt.Errorf("extension %q: want openmatch.DefaultEvaluationCriteria: %w", EvaluationInput, err)
	}
	return c.GetScore(), true, nil
}
