package director

import (
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/kumi-dev/kumi/console"
)

// weightsBody is the admin API's weights document: backend → percent (0.01 resolution).
type weightsBody struct {
	Weights map[string]float64 `json:"weights"`
}

// drainBody is POST /drain's request.
type drainBody struct {
	Server string `json:"server"`
}

// maxAdminBody bounds every admin request body.
const maxAdminBody = 1 << 16

// adminHandler serves the runtime admin API. Every request needs the admin token (admin-token-file)
// as "Authorization: Bearer <token>", compared in constant time; state changes take a JSON body,
// never query parameters. The API sends no CORS headers and refuses any request carrying an Origin
// header, so a web page an operator happens to open cannot drive it.
//
//	GET  /weights                  → {"weights": {"local": 99.99, "agones": 0.01}}
//	PUT  /weights  same body       → the new weights; 400 naming the problem, weights unchanged
//	GET  /pool                     → servers, their state and free slots, sessions, groups
//	POST /drain    {"server": NAME} → {"draining": NAME}: the server leaves the pool at once, finishes
//	                                 or moves its sessions, then exits; 404 if it is not in the pool
//	/console/...                   the live console (console/): its own login, see below
//
// Errors are {"error": "..."} with 400 (bad body), 401 (missing or wrong token), 403 (browser
// origin), 404, 415 (body not application/json). Draining one server, exactly as the node operator
// (or an operator's script) does it:
//
//	POST /drain HTTP/1.1
//	Host: 127.0.0.1:50611
//	Authorization: Bearer <contents of the admin-token-file, surrounding white space trimmed>
//	Content-Type: application/json
//
//	{"server": "kumi-7x2kq"}
//
// or: curl -sf -X POST -H "Authorization: Bearer $(cat admin.token)" -H 'Content-Type: application/json' \
// -d '{"server":"kumi-7x2kq"}' http://127.0.0.1:50611/drain
func (d *Director) adminHandler(adminToken string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /weights", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, d.weightsDoc())
	})
	mux.HandleFunc("PUT /weights", func(w http.ResponseWriter, r *http.Request) {
		var body weightsBody
		if !decodeBody(w, r, &body, `{"weights": {"<backend>": <percent>}}`) {
			return
		}
		if err := d.setWeightsPercent(body.Weights); err != nil {
			httpError(w, http.StatusBadRequest, err.Error())
			return
		}
		d.log.Info("traffic weights set through the admin API", "weights", FormatWeights(d.pool.Weights()), "from", r.RemoteAddr)
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
		if r.URL.RawQuery != "" {
			httpError(w, http.StatusBadRequest, `POST /drain takes no query parameters; send the JSON body {"server": "<name>"}`)
			return
		}
		var body drainBody
		if !decodeBody(w, r, &body, `{"server": "<name>"}`) {
			return
		}
		name := body.Server
		if name == "" {
			httpError(w, http.StatusBadRequest, `body: "server" is required: {"server": "<name>"}`)
			return
		}
		b := d.backendOf(name)
		if !d.pool.Drain(name) {
			httpError(w, http.StatusNotFound, fmt.Sprintf("server %q is not in the pool", name))
			return
		}
		d.m.drains.WithLabelValues(b).Inc()
		d.log.Info("draining server on request", "server", name, "from", r.RemoteAddr)
		d.noteDrain(name, "admin API")
		writeJSON(w, http.StatusOK, map[string]string{"draining": name})
	})
	want := []byte("Bearer " + adminToken)
	// The live console (console/) shares the listener under /console/ with its own authentication:
	// a page that holds no data, then a session cookie a POST /console/login gives for the same
	// admin token in a JSON body (a browser's EventSource cannot send the bearer header). It is
	// dispatched before the checks below, which would refuse every browser request.
	consoleCfg := console.Default()
	consoleCfg.AdminToken, consoleCfg.Path, consoleCfg.Title = adminToken, "/console/", "kumi director"
	cons, err := console.New(d.log.With("part", "console"), consoleSource{d}, consoleCfg)
	if err != nil {
		panic(err) // the settings above are constant and valid
	}
	d.console = cons
	consoleHandler := http.StripPrefix("/console", cons)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/console":
			http.Redirect(w, r, "/console/", http.StatusSeeOther)
			return
		case strings.HasPrefix(r.URL.Path, "/console/"):
			consoleHandler.ServeHTTP(w, r)
			return
		}
		if r.Header.Get("Origin") != "" {
			// Browsers send Origin on cross-origin and on every non-GET request; tools do not.
			httpError(w, http.StatusForbidden, "the admin API does not serve browsers (request has an Origin header)")
			return
		}
		got := strings.TrimSpace(r.Header.Get("Authorization"))
		if subtle.ConstantTimeCompare([]byte(got), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="kumi-director-admin"`)
			httpError(w, http.StatusUnauthorized, "admin API: missing or wrong token; send \"Authorization: Bearer <contents of the director's admin-token-file>\"")
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// decodeBody reads a JSON body into v, answering 415/400 itself when it cannot.
func decodeBody(w http.ResponseWriter, r *http.Request, v any, shape string) bool {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		httpError(w, http.StatusUnsupportedMediaType, "body must be Content-Type: application/json: "+shape)
		return false
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxAdminBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		httpError(w, http.StatusBadRequest, fmt.Sprintf("body: want %s: %v", shape, err))
		return false
	}
	return true
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
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func httpError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}
