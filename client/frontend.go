package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	clientpb "github.com/kumi-dev/kumi/api/client"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
)

// frontendAPI is the part of kumi's frontend a player uses, over gRPC or HTTP/JSON.
type frontendAPI interface {
	create(ctx context.Context, attrs map[string]*structpb.Value) (*clientpb.Ticket, error)
	// waitAssigned returns the ticket once it is assigned.
	waitAssigned(ctx context.Context, id string) (*clientpb.Ticket, error)
	cancel(ctx context.Context, id string) error
}

// grpcFrontend uses kumi.client.v1.Frontend over gRPC.
type grpcFrontend struct {
	fe   clientpb.FrontendClient
	auth string
}

func (g *grpcFrontend) ctx(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", g.auth)
}

func (g *grpcFrontend) create(ctx context.Context, attrs map[string]*structpb.Value) (*clientpb.Ticket, error) {
	return g.fe.CreateTicket(g.ctx(ctx), &clientpb.CreateTicketRequest{Attributes: attrs})
}

func (g *grpcFrontend) waitAssigned(ctx context.Context, id string) (*clientpb.Ticket, error) {
	for {
		stream, err := g.fe.WatchAssignment(g.ctx(ctx), &clientpb.WatchAssignmentRequest{TicketId: id})
		if err != nil {
			return nil, err
		}
		for {
			t, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				break // the stream ended without an assignment: watch again
			}
			if err != nil {
				return nil, err
			}
			if t.GetState() == clientpb.Ticket_ASSIGNED {
				return t, nil
			}
		}
	}
}

func (g *grpcFrontend) cancel(ctx context.Context, id string) error {
	_, err := g.fe.CancelTicket(g.ctx(ctx), &clientpb.CancelTicketRequest{TicketId: id})
	return err
}

// httpFrontend uses the frontend's HTTP/JSON API: the same calls examples/unreal makes with
// FHttpModule (POST /v1/tickets, long-poll GET /v1/tickets/{id}?wait=, DELETE /v1/tickets/{id}).
type httpFrontend struct {
	base string
	auth string
	wait time.Duration
	hc   *http.Client
}

// httpError is a non-2xx answer: status and the frontend's JSON error body.
type httpError struct {
	Status     int
	Body       string
	RetryAfter time.Duration
}

func (e *httpError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.Status, e.Body) }

func (h *httpFrontend) do(ctx context.Context, method, path string, body []byte) (*clientpb.Ticket, error) {
	req, err := http.NewRequestWithContext(ctx, method, h.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", h.auth)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := h.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		e := &httpError{Status: resp.StatusCode, Body: string(bytes.TrimSpace(data))}
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil {
			e.RetryAfter = time.Duration(s) * time.Second
		}
		return nil, e
	}
	if method == http.MethodDelete {
		return nil, nil
	}
	t := &clientpb.Ticket{}
	if err := protojson.Unmarshal(data, t); err != nil {
		return nil, fmt.Errorf("response of %s %s is not a Ticket: %w", method, path, err)
	}
	return t, nil
}

func (h *httpFrontend) create(ctx context.Context, attrs map[string]*structpb.Value) (*clientpb.Ticket, error) {
	body, err := protojson.Marshal(&clientpb.CreateTicketRequest{Attributes: attrs})
	if err != nil {
		return nil, err
	}
	return h.do(ctx, http.MethodPost, "/v1/tickets", body)
}

func (h *httpFrontend) waitAssigned(ctx context.Context, id string) (*clientpb.Ticket, error) {
	path := "/v1/tickets/" + url.PathEscape(id) + "?wait=" + h.wait.String()
	for {
		t, err := h.do(ctx, http.MethodGet, path, nil)
		var he *httpError
		if errors.As(err, &he) && he.Status == http.StatusTooManyRequests {
			// Rate limited: wait as told, then poll again.
			timer := time.NewTimer(max(he.RetryAfter, time.Second))
			select {
			case <-ctx.Done():
				timer.Stop()
				return nil, ctx.Err()
			case <-timer.C:
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		if t.GetState() == clientpb.Ticket_ASSIGNED {
			return t, nil
		}
	}
}

func (h *httpFrontend) cancel(ctx context.Context, id string) error {
	_, err := h.do(ctx, http.MethodDelete, "/v1/tickets/"+url.PathEscape(id), nil)
	return err
}
