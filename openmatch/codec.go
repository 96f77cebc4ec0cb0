package openmatch

import (
	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // registers the "proto" codec we delegate to
	"google.golang.org/grpc/mem"
)

// preEncoded is a response message whose wire bytes were built by hand (query pages are
// concatenations of already-marshalled tickets, so nothing is marshalled twice).
type preEncoded struct{ b []byte }

// rawMsg receives a message's wire bytes undecoded (a copy the caller owns).
type rawMsg struct{ b []byte }

// codec is the proto codec plus a pass-through for preEncoded and rawMsg. It is installed per server with
// grpc.ForceServerCodecV2, never globally.
type codec struct{ proto encoding.CodecV2 }

func newCodec() *codec { return &codec{proto: encoding.GetCodecV2("proto")} }

func (c *codec) Name() string { return "proto" }

func (c *codec) Marshal(v any) (mem.BufferSlice, error) {
	if p, ok := v.(*preEncoded); ok {
		return mem.BufferSlice{mem.SliceBuffer(p.b)}, nil
	}
	return c.proto.Marshal(v)
}

func (c *codec) Unmarshal(data mem.BufferSlice, v any) error {
	if r, ok := v.(*rawMsg); ok {
		r.b = data.Materialize()
		return nil
	}
	return c.proto.Unmarshal(data, v)
}
