package director

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// weightsBody is the admin API's weights document: backend → percent (0.01 resolution).
type weightsBody struct {
	Weights map[string]float64 `json:"weights"`
}

// adminHandler serves the runtime admin API:
//
//	GET  /weights             → {"weights": {"local": 99.99, "agones": 0.01}}
//	PUT  /weights  same body  → the new weights; 400 naming the problem, weights unchanged
//	GET  /pool                → servers, their state and free slots, sessions, groups
//	POST /drain?server=NAME   → ask one server to drain (it leaves the pool at once)
func (d *Director) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /weights", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, d.weightsDoc())
	})
	mux.HandleFunc("PUT /weights", func(w http.ResponseWriter, r *http.Request) {
		var body weightsBody
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&body); err != nil {
			httpError(w, http.StatusBadRequest, fmt.Sprintf("body: want {\"weights\": {\"<backend>\": <percent>}}: %v", err))
			return
		}
		units := make(map[string]int, len(body.Weights))
		for b, p := range body.Weights {
			u, err := PercentToUnits(p)
			if err != nil {
				httpError(w, http.StatusBadRequest, fmt.Sprintf("weights[%q]: %v", b, err))
				return
			}
			units[b] = u
		}
		if err := d.SetWeights(units); err != nil {
			httpError(w, http.StatusBadRequest, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, d.weightsDoc())
	})
	mux.HandleFunc("GET /pool", func(w http.ResponseWriter, r *http.Request) {
		now := time.Now()
		snap := d.pool.Snapshot(now)
		backends := map[string]map[string]any{}
		for b := range d.backends {
			backends[b] = map[string]any{"free": d.pool.Free(b, now), "target": d.pool.Target(b, now)}
		}
		writeJSON(w, http.StatusOK, map[string]any{"servers": snap.Servers, "sessions": snap.Sessions,
			"groups": snap.Groups, "backends": backends, "session_rate": d.pool.Rate(now)})
	})
	mux.HandleFunc("POST /drain", func(w http.ResponseWriter, r *http.Request) {
		name := r.URL.Query().Get("server")
		if name == "" {
			httpError(w, http.StatusBadRequest, "query parameter server is required")
			return
		}
		b := d.backendOf(name)
		if !d.pool.Drain(name) {
			httpError(w, http.StatusNotFound, fmt.Sprintf("server %q is not in the pool", name))
			return
		}
		d.m.drains.WithLabelValues(b).Inc()
		d.log.Info("draining server on request", "server", name)
		writeJSON(w, http.StatusOK, map[string]string{"draining": name})
	})
	return mux
}

func (d *Director) weightsDoc() weightsBody {
	out := weightsBody{Weights: map[string]float64{}}
	for b, u := range d.pool.Weights() {
		out.Weights[b] = float64(u) / 100
	}
	return out
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func httpError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}
