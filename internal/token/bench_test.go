package token

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"math/big"
	"strings"
	"syscall"
	"testing"
	"time"
)

// BenchmarkVerifyServerToken is the full game-server path (size cap, parse, kid lookup, alg check,
// signature, claims). Run with -cpu 1 for per-core figures.
func BenchmarkVerifyServerToken(b *testing.B) {
	for _, alg := range []string{AlgEdDSA, AlgES256, AlgRS256} {
		b.Run(alg, func(b *testing.B) {
			s := newTestSigner(b, alg, "k")
			v := verifierFor(b, s)
			raw, err := s.ServerToken(ServerClaims{PlayerID: "p1", SessionID: "s1", Server: "gs-1", ExpiresAt: fixedNow.Add(time.Minute)})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			cpu0 := cpuTime()
			for b.Loop() {
				if _, err := v.VerifyServerToken(raw, "gs-1"); err != nil {
					b.Fatal(err)
				}
			}
			reportCPU(b, cpuTime()-cpu0, "verifications/cpu-s")
		})
	}
}

// BenchmarkRawSignatureVerify is the baseline: the bare signature check on the same signing input,
// so the JWT overhead is the ratio of the two.
func BenchmarkRawSignatureVerify(b *testing.B) {
	for _, alg := range []string{AlgEdDSA, AlgES256, AlgRS256} {
		b.Run(alg, func(b *testing.B) {
			s := newTestSigner(b, alg, "k")
			raw, err := s.ServerToken(ServerClaims{PlayerID: "p1", SessionID: "s1", Server: "gs-1", ExpiresAt: fixedNow.Add(time.Minute)})
			if err != nil {
				b.Fatal(err)
			}
			i := strings.LastIndexByte(raw, '.')
			input := []byte(raw[:i])
			sig, _ := b64.DecodeString(raw[i+1:])
			cpu0 := cpuTime()
			for b.Loop() {
				switch k := s.PublicKey().Key.(type) {
				case ed25519.PublicKey:
					if !ed25519.Verify(k, input, sig) {
						b.Fatal("bad sig")
					}
				case *ecdsa.PublicKey:
					h := sha256.Sum256(input)
					if !ecdsa.Verify(k, h[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
						b.Fatal("bad sig")
					}
				case *rsa.PublicKey:
					h := sha256.Sum256(input)
					if err := rsa.VerifyPKCS1v15(k, crypto.SHA256, h[:], sig); err != nil {
						b.Fatal(err)
					}
				}
			}
			reportCPU(b, cpuTime()-cpu0, "verifications/cpu-s")
		})
	}
}

func BenchmarkServerTokenSign(b *testing.B) {
	for _, alg := range []string{AlgEdDSA, AlgES256, AlgRS256} {
		b.Run(alg, func(b *testing.B) {
			s := newTestSigner(b, alg, "k")
			b.ReportAllocs()
			cpu0 := cpuTime()
			for b.Loop() {
				if _, err := s.ServerToken(ServerClaims{PlayerID: "p1", SessionID: "s1", Server: "gs-1", ExpiresAt: fixedNow.Add(time.Minute)}); err != nil {
					b.Fatal(err)
				}
			}
			reportCPU(b, cpuTime()-cpu0, "tokens/cpu-s")
		})
	}
}

// reportCPU reports per-op CPU time and ops per CPU-second: on a shared machine wall time per op
// includes waiting for a core; CPU time does not.
func reportCPU(b *testing.B, cpu time.Duration, unit string) {
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
	b.ReportMetric(float64(b.N)/cpu.Seconds(), unit)
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
