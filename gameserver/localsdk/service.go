package localsdk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	sdkpb "github.com/kumi-dev/kumi/api/agones/sdk"
	betapb "github.com/kumi-dev/kumi/api/agones/sdk/beta"
)

// stableService serves agones.dev.sdk.SDK. Separate from betaService because both generated
// packages name their embedded type's marker method the same.
type stableService struct {
	sdkpb.UnimplementedSDKServer
	s *Server
}

func (h *stableService) Ready(context.Context, *sdkpb.Empty) (*sdkpb.Empty, error) {
	h.s.requestState(StateRequestReady, nil)
	return &sdkpb.Empty{}, nil
}

func (h *stableService) Allocate(context.Context, *sdkpb.Empty) (*sdkpb.Empty, error) {
	now := time.Now()
	h.s.requestState(StateAllocated, func(gs *sdkpb.GameServer) { StampAllocated(gs, now) })
	return &sdkpb.Empty{}, nil
}

func (h *stableService) Shutdown(context.Context, *sdkpb.Empty) (*sdkpb.Empty, error) {
	h.s.requestState(StateShutdown, nil)
	return &sdkpb.Empty{}, nil
}

func (h *stableService) Reserve(_ context.Context, d *sdkpb.Duration) (*sdkpb.Empty, error) {
	if d.GetSeconds() < 0 {
		return nil, status.Errorf(codes.InvalidArgument, "reserve seconds %d must not be negative", d.GetSeconds())
	}
	h.s.reserve(time.Duration(d.GetSeconds()) * time.Second)
	return &sdkpb.Empty{}, nil
}

func (h *stableService) Health(stream sdkpb.SDK_HealthServer) error {
	for {
		_, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return stream.SendAndClose(&sdkpb.Empty{})
		}
		if err != nil {
			return err
		}
		h.s.touchHealth()
	}
}

func (h *stableService) GetGameServer(context.Context, *sdkpb.Empty) (*sdkpb.GameServer, error) {
	return h.s.GameServer(), nil
}

func (h *stableService) WatchGameServer(_ *sdkpb.Empty, stream sdkpb.SDK_WatchGameServerServer) error {
	sub := h.s.Subscribe()
	defer sub.Close()
	for {
		gs, err := sub.Next(stream.Context())
		if err != nil {
			if errors.Is(err, ErrClosed) {
				return status.Error(codes.Unavailable, "local SDK server stopping")
			}
			return err
		}
		if err := stream.Send(gs); err != nil {
			return err
		}
	}
}

func (h *stableService) SetLabel(_ context.Context, kv *sdkpb.KeyValue) (*sdkpb.Empty, error) {
	key := MetadataPrefix + kv.GetKey()
	if err := validQualifiedName(key); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "invalid label: %v", err)
	}
	if err := validLabelValue(kv.GetValue()); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "invalid label %q: %v", key, err)
	}
	h.s.setMeta(func(gs *sdkpb.GameServer) { gs.ObjectMeta.Labels[key] = kv.GetValue() })
	return &sdkpb.Empty{}, nil
}

// SetAnnotation checks the key like a label key; annotation values are free text in Kubernetes.
func (h *stableService) SetAnnotation(_ context.Context, kv *sdkpb.KeyValue) (*sdkpb.Empty, error) {
	key := MetadataPrefix + kv.GetKey()
	if err := validQualifiedName(key); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "invalid annotation: %v", err)
	}
	h.s.setMeta(func(gs *sdkpb.GameServer) { gs.ObjectMeta.Annotations[key] = kv.GetValue() })
	return &sdkpb.Empty{}, nil
}

func (s *Server) setMeta(fn func(gs *sdkpb.GameServer)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_ = s.mutate(func(gs *sdkpb.GameServer) error {
		if gs.ObjectMeta.Labels == nil {
			gs.ObjectMeta.Labels = map[string]string{}
		}
		if gs.ObjectMeta.Annotations == nil {
			gs.ObjectMeta.Annotations = map[string]string{}
		}
		fn(gs)
		return nil
	})
}

// betaService serves agones.dev.sdk.beta.SDK (Counters and Lists). Its errors carry no gRPC code
// (Unknown) and Agones' message prefixes ("not found.", "out of range.", ...), as the real
// sidecar's do, so clients can only tell kinds apart by prefix there too.
type betaService struct {
	betapb.UnimplementedSDKServer
	s *Server
}

func (h *betaService) GetCounter(_ context.Context, in *betapb.GetCounterRequest) (*betapb.Counter, error) {
	gs := h.s.GameServer()
	c, ok := gs.Status.Counters[in.GetName()]
	if !ok {
		return nil, fmt.Errorf("not found. %s Counter not found", in.GetName())
	}
	return &betapb.Counter{Name: in.GetName(), Count: c.Count, Capacity: c.Capacity}, nil
}

func (h *betaService) UpdateCounter(_ context.Context, in *betapb.UpdateCounterRequest) (*betapb.Counter, error) {
	req := in.GetCounterUpdateRequest()
	if req == nil {
		return nil, errors.New("invalid argument. CounterUpdateRequest cannot be nil")
	}
	var out *betapb.Counter
	err := h.s.update(func(gs *sdkpb.GameServer) error {
		c, ok := gs.Status.Counters[req.GetName()]
		if !ok {
			return fmt.Errorf("not found. %s Counter not found", req.GetName())
		}
		next := &betapb.Counter{Name: req.GetName(), Count: c.Count, Capacity: c.Capacity}
		if req.Capacity != nil {
			next.Capacity = req.Capacity.GetValue()
			if next.Capacity < 0 {
				return fmt.Errorf("out of range. Capacity must be greater than or equal to 0. Found Capacity: %d", next.Capacity)
			}
		}
		if req.Count != nil {
			next.Count = req.Count.GetValue()
			if next.Count < 0 || next.Count > next.Capacity {
				return fmt.Errorf("out of range. Count must be within range [0,Capacity]. Found Count: %d, Capacity: %d", next.Count, next.Capacity)
			}
		}
		if req.CountDiff != 0 {
			next.Count += req.CountDiff
			if next.Count < 0 || next.Count > next.Capacity {
				return fmt.Errorf("out of range. Count must be within range [0,Capacity]. Found Count: %d, Capacity: %d", next.Count, next.Capacity)
			}
		}
		// A capacity below the count lowers the count, as the GameServer status ends up in the cluster
		// (Agones' UpdateCounterCapacity); Agones' own local server leaves the count above.
		next.Count = min(next.Count, next.Capacity)
		c.Count, c.Capacity = next.Count, next.Capacity
		out = next
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (h *betaService) GetList(_ context.Context, in *betapb.GetListRequest) (*betapb.List, error) {
	gs := h.s.GameServer()
	l, ok := gs.Status.Lists[in.GetName()]
	if !ok {
		return nil, fmt.Errorf("not found. %s List not found", in.GetName())
	}
	return &betapb.List{Name: in.GetName(), Capacity: l.Capacity, Values: l.Values}, nil
}

// listFields are the paths an UpdateList mask may name.
var listFields = []string{"name", "capacity", "values"}

func (h *betaService) UpdateList(_ context.Context, in *betapb.UpdateListRequest) (*betapb.List, error) {
	if in.GetList() == nil || in.GetUpdateMask() == nil {
		return nil, fmt.Errorf("invalid argument. List: %v and UpdateMask %v cannot be nil", in.GetList(), in.GetUpdateMask())
	}
	paths := in.GetUpdateMask().GetPaths()
	for _, p := range paths {
		if !slices.Contains(listFields, p) {
			return nil, fmt.Errorf("invalid argument. Field Mask Path(s): %v are invalid for List. Use valid field name(s): %v", paths, listFields)
		}
	}
	req := in.GetList()
	if req.Capacity < 0 || req.Capacity > ListMaxCapacity {
		return nil, fmt.Errorf("out of range. Capacity must be within range [0,%d]. Found Capacity: %d", ListMaxCapacity, req.Capacity)
	}
	var out *betapb.List
	err := h.s.update(func(gs *sdkpb.GameServer) error {
		l, ok := gs.Status.Lists[req.GetName()]
		if !ok {
			return fmt.Errorf("not found. %s List not found", req.GetName())
		}
		for _, p := range paths {
			switch p {
			case "capacity":
				l.Capacity = req.Capacity
			case "values":
				l.Values = append([]string(nil), req.Values...)
			}
		}
		// A lowered capacity silently truncates the values, as in Agones.
		if int64(len(l.Values)) > l.Capacity {
			l.Values = append([]string(nil), l.Values[:l.Capacity]...)
		}
		out = &betapb.List{Name: req.GetName(), Capacity: l.Capacity, Values: append([]string(nil), l.Values...)}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (h *betaService) AddListValue(_ context.Context, in *betapb.AddListValueRequest) (*betapb.List, error) {
	var out *betapb.List
	err := h.s.update(func(gs *sdkpb.GameServer) error {
		l, ok := gs.Status.Lists[in.GetName()]
		if !ok {
			return fmt.Errorf("not found. %s List not found", in.GetName())
		}
		if l.Capacity <= int64(len(l.Values)) {
			return fmt.Errorf("out of range. No available capacity. Current Capacity: %d, List Size: %d", l.Capacity, len(l.Values))
		}
		if slices.Contains(l.Values, in.GetValue()) {
			return fmt.Errorf("already exists. Value: %s already in List: %s", in.GetValue(), in.GetName())
		}
		l.Values = append(l.Values, in.GetValue())
		out = &betapb.List{Name: in.GetName(), Capacity: l.Capacity, Values: append([]string(nil), l.Values...)}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (h *betaService) RemoveListValue(_ context.Context, in *betapb.RemoveListValueRequest) (*betapb.List, error) {
	var out *betapb.List
	err := h.s.update(func(gs *sdkpb.GameServer) error {
		l, ok := gs.Status.Lists[in.GetName()]
		if !ok {
			return fmt.Errorf("not found. %s List not found", in.GetName())
		}
		i := slices.Index(l.Values, in.GetValue())
		if i < 0 {
			return fmt.Errorf("not found. Value: %s not found in List: %s", in.GetValue(), in.GetName())
		}
		l.Values = slices.Delete(l.Values, i, i+1)
		out = &betapb.List{Name: in.GetName(), Capacity: l.Capacity, Values: append([]string(nil), l.Values...)}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// update is mutate under the lock, for the SDK handlers.
func (s *Server) update(fn func(gs *sdkpb.GameServer) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mutate(fn)
}
