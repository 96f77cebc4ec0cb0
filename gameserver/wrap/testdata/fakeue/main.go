// Command fakeue behaves, for kumi's tests and demo, like an Unreal dedicated server run by
// `kumi gameserver wrap`: it takes -port= and -log, binds that UDP port, logs in Unreal's
// "Category: Verbosity: text" shape, and admits a client the way PreLogin would with the wrapper:
// the first datagram of a client, "HELLO ?token=<server token>", is sent to $KUMI_ADMIT_URL and
// the client is answered "WELCOME <player id> <session id>" or "REFUSED <reason>". Later datagrams
// of an admitted client are echoed. SIGTERM ends it with "LogExit: Exiting.".
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func logf(format string, args ...any) {
	fmt.Printf("[%s][  0]"+format+"\n", append([]any{time.Now().UTC().Format("2006.01.02-15.04.05:000")}, args...)...)
}

func main() {
	port := flag.Int("port", 7777, "UDP game port")
	flag.Bool("log", false, "log to stdout (always on)")
	flag.Parse()
	logf("LogInit: Build: ++UE5+Release-5.4-CL-0 (kumi fakeue)")
	pc, err := net.ListenPacket("udp", fmt.Sprintf("0.0.0.0:%d", *port))
	if err != nil {
		logf("LogNet: Error: IpNetDriver_0 failed to bind port %d: %v", *port, err)
		os.Exit(1)
	}
	logf("LogNet: GameNetDriver IpNetDriver_0 IpNetDriver listening on port %d", *port)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sig
		logf("LogExit: Exiting.")
		os.Exit(0)
	}()
	admitURL := os.Getenv("KUMI_ADMIT_URL")
	players := map[string]string{}
	buf := make([]byte, 2048)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			logf("LogNet: Error: %v", err)
			os.Exit(1)
		}
		msg := string(buf[:n])
		if p, ok := players[from.String()]; ok {
			pc.WriteTo([]byte("ECHO "+p+" "+msg), from)
			continue
		}
		tok, ok := strings.CutPrefix(msg, "HELLO ?token=")
		if !ok {
			pc.WriteTo([]byte("REFUSED say HELLO ?token=<server token> first"), from)
			continue
		}
		player, session, err := admit(admitURL, strings.TrimSpace(tok))
		if err != nil {
			logf("LogNet: Warning: PreLogin failure: %v", err)
			pc.WriteTo([]byte("REFUSED "+err.Error()), from)
			continue
		}
		players[from.String()] = player
		logf("LogNet: Login request: ?token=... userId: %s session: %s", player, session)
		pc.WriteTo([]byte("WELCOME "+player+" "+session), from)
	}
}

func admit(url, token string) (string, string, error) {
	if url == "" {
		return "", "", fmt.Errorf("KUMI_ADMIT_URL not set")
	}
	body, _ := json.Marshal(map[string]string{"token": token})
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return "", "", fmt.Errorf("admit %d: %s", resp.StatusCode, strings.TrimSpace(string(data)))
	}
	var r struct {
		PlayerID  string `json:"player_id"`
		SessionID string `json:"session_id"`
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return "", "", err
	}
	return r.PlayerID, r.SessionID, nil
}
