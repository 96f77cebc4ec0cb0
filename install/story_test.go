package install_test

import (
	"context"
	"fmt"
	"github.com/kumi-dev/kumi/internal/logbuf"
	"github.com/kumi-dev/kumi/internal/ticketseal"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kumi-dev/kumi/api/openmatch"
	"github.com/kumi-dev/kumi/director"
	"github.com/kumi-dev/kumi/director/agones"
	"github.com/kumi-dev/kumi/internal/kubetest/agonesalloc"
	"github.com/kumi-dev/kumi/internal/omext"
	"github.com/kumi-dev/kumi/internal/token"
	mf "github.com/kumi-dev/kumi/matchfunction"
	om "github.com/kumi-dev/kumi/openmatch"
)

var (
	fleetsGVR      = schema.GroupVersionResource{Group: "agones.dev", Version: "v1", Resource: "fleets"}
	gameServersGVR = schema.GroupVersionResource{Group: "agones.dev", Version: "v1", Resource: "gameservers"}
)

// TestClusterStory installs the chart for real into a real kube-apiserver, plays Agones' part for
// the Fleet (its controllers cannot run here: GameServers are created from the Fleet's template and
// moved to Ready with an address and port, as the controller and the SDK would), then runs the
// director in process with the chart's settings (namespace, server labels, the generated keys from
// the installed Secret) against that API server through the allocation responder, files a voice
// ticket and checks the session it is placed in: the ticket's assignment names a GameServer's public
// ip:port and carries a server token the game servers' certificate verifies, and the GameServer is
// Allocated to the director's pool with its sessions Counter claimed.
func TestClusterStory(t *testing.T) {
	api := startAPIServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	logs := &logbuf.Buffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("component logs:\n%s", logs.String())
		}
	})
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))

	objs, _ := render(t, []string{"gameservers.sessionsPerServer=10", "gameservers.replicas=2"})
	for _, o := range objs {
		if err := api.apply(ctx, o, false); err != nil {
			t.Fatalf("install %s %s: %v", o.GetKind(), o.GetName(), err)
		}
	}

	// Agones' part: GameServers from the Fleet's template, Ready on a node with an external IP.
	fleet, err := api.env.Dynamic.Resource(fleetsGVR).Namespace("games").Get(ctx, "kumi-gameserver", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tmpl, _, _ := unstructured.NestedMap(fleet.Object, "spec", "template")
	replicas, _, _ := unstructured.NestedInt64(fleet.Object, "spec", "replicas")
	for i := range int(replicas) {
		gs := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "agones.dev/v1", "kind": "GameServer"}}
		gs.SetName(fmt.Sprintf("kumi-gameserver-%d", i))
		labels := map[string]string{"agones.dev/fleet": "kumi-gameserver"}
		tl, _, _ := unstructured.NestedStringMap(tmpl, "metadata", "labels")
		for k, v := range tl {
			labels[k] = v
		}
		gs.SetLabels(labels)
		gs.Object["spec"] = tmpl["spec"]
		gs.Object["status"] = map[string]any{
			"state": "Ready", "address": "203.0.113.7", "nodeName": "node-a",
			"ports":    []any{map[string]any{"name": "default", "port": int64(7000 + i)}},
			"counters": map[string]any{"sessions": map[string]any{"count": int64(0), "capacity": int64(10)}},
		}
		if _, err := api.env.Dynamic.Resource(gameServersGVR).Namespace("games").Create(ctx, gs, metav1.CreateOptions{FieldValidation: metav1.FieldValidationStrict}); err != nil {
			t.Fatalf("create GameServer: %v", err)
		}
	}

	// The director's keys are the ones the chart generated into the installed Secret.
	sec, err := api.env.Kube.CoreV1().Secrets("games").Get(ctx, "kumi-keys", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	key, err := token.ParsePrivateKeyPEM(sec.Data["token.key"])
	if err != nil {
		t.Fatal(err)
	}
	signer, err := token.NewSigner(key, "", "kumi")
	if err != nil {
		t.Fatal(err)
	}

	// Open Match core and match function in process, as the chart's Deployments run them.
	reg := prometheus.NewRegistry()
	omCfg := om.Default()
	omCfg.FrontendAddr, omCfg.BackendAddr, omCfg.QueryAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	core, err := om.Start(ctx, log.With("component", "openmatch"), omCfg, prometheus.WrapRegistererWithPrefix("om_", reg))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = core.Wait() })
	mfCfg := mf.Default()
	mfCfg.ListenAddr, mfCfg.QueryAddr = "127.0.0.1:0", core.QueryAddr()
	mmf, err := mf.Start(ctx, log.With("component", "matchfunction"), mfCfg, prometheus.WrapRegistererWithPrefix("mf_", reg))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = mmf.Wait() })

	// The director with the chart's Agones settings, through the allocation responder.
	resp := agonesalloc.Start(t, api.env.Config, agonesalloc.Config{BatchWait: 10 * time.Millisecond, Seed: 1})
	aCfg := agones.DefaultConfig()
	aCfg.Namespace = "games"
	backend, err := agones.NewForRESTConfig(resp.RESTConfig(), aCfg, log)
	if err != nil {
		t.Fatal(err)
	}
	mmfHost, mmfPort, _ := net.SplitHostPort(mmf.Addr())
	dCfg := director.Default()
	dCfg.ControlAddr, dCfg.AdminAddr, dCfg.BackendAddr = "127.0.0.1:0", "", core.BackendAddr()
	dCfg.MMFHost = mmfHost
	if dCfg.MMFPort, err = strconv.Atoi(mmfPort); err != nil {
		t.Fatal(err)
	}
	dCfg.Profiles = []string{"voice"}
	dCfg.ServerLabels = []string{"agones.dev/fleet=kumi-gameserver"} // the chart's -server-labels
	dCfg.Signer = signer
	dCfg.ControlSecret = string(sec.Data["control.secret"])
	dCfg.TicketSealSecret = string(sec.Data["ticket.secret"]) // the chart's frontends seal with it
	dCfg.AdminToken = string(sec.Data["admin.token"])
	dCfg.RebuildTimeout = 0
	dCfg.Pool.MinFreeSlots = 5
	dCfg.Pool.DefaultCap = 10
	d, err := director.Start(ctx, log.With("component", "director"), dCfg, prometheus.WrapRegistererWithPrefix("director_", reg), backend)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = d.Wait() })

	// A player's voice ticket, as kumi's frontend files it.
	conn, err := grpc.NewClient(core.FrontendAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fe := openmatch.NewFrontendServiceClient(conn)
	// Sealed as the chart's frontend would (the director assigns only sealed tickets).
	sealer, err := ticketseal.New(string(sec.Data["ticket.secret"]), 0)
	if err != nil {
		t.Fatal(err)
	}
	sf := &openmatch.SearchFields{StringArgs: map[string]string{"mode": "voice", "chat_group": "friends"}}
	tk, err := fe.CreateTicket(ctx, &openmatch.CreateTicketRequest{Ticket: &openmatch.Ticket{
		SearchFields: sf,
		Extensions:   sealer.Seal(omext.PutString(nil, omext.Player, "player-1"), "player-1", sf, time.Now()),
	}})
	if err != nil {
		t.Fatal(err)
	}
	var as *openmatch.Assignment
	for as.GetConnection() == "" {
		got, err := fe.GetTicket(ctx, &openmatch.GetTicketRequest{TicketId: tk.GetId()})
		if err != nil {
			t.Fatalf("ticket %s never assigned: %v", tk.GetId(), err)
		}
		as = got.GetAssignment()
		if as.GetConnection() == "" {
			select {
			case <-ctx.Done():
				t.Fatalf("ticket %s not assigned: %v", tk.GetId(), ctx.Err())
			case <-time.After(50 * time.Millisecond):
			}
		}
	}

	// kubectl get gameservers: the one behind the assignment is Allocated to the pool.
	host, port, _ := net.SplitHostPort(as.GetConnection())
	if host != "203.0.113.7" || (port != "7000" && port != "7001") {
		t.Fatalf("assignment connection %q is not a GameServer's status address:port", as.GetConnection())
	}
	p, _ := strconv.Atoi(port)
	gs, err := api.env.Dynamic.Resource(gameServersGVR).Namespace("games").Get(ctx, fmt.Sprintf("kumi-gameserver-%d", p-7000), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if st, _, _ := unstructured.NestedString(gs.Object, "status", "state"); st != "Allocated" {
		t.Errorf("GameServer %s state %q, want Allocated", gs.GetName(), st)
	}
	if gs.GetLabels()["kumi.dev/pool"] != "default" {
		t.Errorf("GameServer %s labels %v lack kumi.dev/pool=default", gs.GetName(), gs.GetLabels())
	}
	if c, _, _ := unstructured.NestedInt64(gs.Object, "status", "counters", "sessions", "count"); c < 1 {
		t.Errorf("GameServer %s sessions count %d, want the allocation's claim", gs.GetName(), c)
	}

	// The server token verifies with the certificate the chart mounts into the game servers.
	tok, _, err := omext.String(as.GetExtensions(), omext.ServerToken)
	if err != nil || tok == "" {
		t.Fatalf("assignment has no server token: %v", err)
	}
	// Exactly the game servers' flag: -token-public-keys=/etc/kumi/keys/token.crt (kid = thumbprint).
	crt := filepath.Join(t.TempDir(), "token.crt")
	if err := os.WriteFile(crt, sec.Data["token.crt"], 0o600); err != nil {
		t.Fatal(err)
	}
	vCfg := token.DefaultVerifierConfig()
	vCfg.PublicKeys, vCfg.Issuer = []string{crt}, "kumi"
	v, err := token.NewVerifier(ctx, vCfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.VerifyServerToken(tok, gs.GetName()); err != nil {
		t.Errorf("server token does not verify with token.crt for %s: %v", gs.GetName(), err)
	}
}
