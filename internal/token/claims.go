package token

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// wireClaims is the JSON shape read from a token. Decoding it in one pass (instead of jwt's
// NumericDate, which runs a nested json.Unmarshal per date) takes a third off claim decoding.
type wireClaims struct {
	Iss string          `json:"iss"`
	Sub string          `json:"sub"`
	Aud json.RawMessage `json:"aud"`
	Exp *float64        `json:"exp"`
	Nbf *float64        `json:"nbf"`
	Iat *float64        `json:"iat"`
	Jti string          `json:"jti"`
	Sid string          `json:"sid"`
	Ins string          `json:"ins"`
	Tp  string          `json:"tp"`
}

// registeredNames are the claims kumi reads itself; extra claims may not reuse them.
var registeredNames = []string{"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "sid", "ins", "tp"}

// UnmarshalJSON fills the registered claims and sid; aud may be a string or an array (RFC 7519 §4.1.3).
// The extra claims named in c.want are decoded too, in a second pass only when some are wanted.
func (c *jwtClaims) UnmarshalJSON(b []byte) error {
	var w wireClaims
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	want := c.want
	*c = jwtClaims{RegisteredClaims: jwt.RegisteredClaims{Issuer: w.Iss, Subject: w.Sub, ID: w.Jti}, SID: w.Sid, Ins: w.Ins, Tp: w.Tp, want: want}
	if len(want) > 0 {
		var all map[string]json.RawMessage
		if err := json.Unmarshal(b, &all); err != nil {
			return err
		}
		for _, name := range want {
			raw, ok := all[name]
			if !ok {
				continue
			}
			var v any
			if err := json.Unmarshal(raw, &v); err != nil {
				return err
			}
			if c.Extra == nil {
				c.Extra = make(map[string]any, len(want))
			}
			c.Extra[name] = v
		}
	}
	if len(w.Aud) > 0 && string(w.Aud) != "null" {
		if w.Aud[0] == '"' {
			var one string
			if err := json.Unmarshal(w.Aud, &one); err != nil {
				return err
			}
			c.Audience = jwt.ClaimStrings{one}
		} else {
			var many []string
			if err := json.Unmarshal(w.Aud, &many); err != nil {
				return errors.New("aud must be a string or an array of strings")
			}
			c.Audience = many
		}
	}
	var err error
	if c.ExpiresAt, err = numericDate("exp", w.Exp); err != nil {
		return err
	}
	if c.NotBefore, err = numericDate("nbf", w.Nbf); err != nil {
		return err
	}
	c.IssuedAt, err = numericDate("iat", w.Iat)
	return err
}

func numericDate(name string, f *float64) (*jwt.NumericDate, error) {
	if f == nil {
		return nil, nil
	}
	if math.IsNaN(*f) || math.IsInf(*f, 0) || math.Abs(*f) > 1e15 {
		return nil, errors.New(name + " is not a valid NumericDate")
	}
	sec, frac := math.Modf(*f)
	return jwt.NewNumericDate(time.Unix(int64(sec), int64(frac*1e9))), nil
}

// UnverifiedServerInstance reads the "ins" claim (the game-server instance) of a server token
// without checking its signature. Clients use it to seal their JOIN to that instance: they got
// the token over the frontend's authenticated channel and cannot verify it anyway, and the game
// server verifies everything it admits.
func UnverifiedServerInstance(raw string) (string, error) {
	var c jwtClaims
	if _, _, err := jwt.NewParser().ParseUnverified(raw, &c); err != nil {
		return "", fmt.Errorf("token: server token does not parse: %w", err)
	}
	if c.Ins == "" {
		return "", errors.New("token: server token names no game-server instance (claim ins); it was minted for protocol v1 or by a director that had no report from the server")
	}
	return c.Ins, nil
}

// MarshalJSON writes the registered claims, sid and the extra claims (which may not reuse a
// registered name).
func (c jwtClaims) MarshalJSON() ([]byte, error) {
	type plain struct {
		jwt.RegisteredClaims
		SID string `json:"sid,omitempty"`
		Ins string `json:"ins,omitempty"`
		Tp  string `json:"tp,omitempty"`
	}
	b, err := json.Marshal(plain{c.RegisteredClaims, c.SID, c.Ins, c.Tp})
	if err != nil || len(c.Extra) == 0 {
		return b, err
	}
	var all map[string]any
	if err := json.Unmarshal(b, &all); err != nil {
		return nil, err
	}
	for k, v := range c.Extra {
		if slices.Contains(registeredNames, k) {
			return nil, fmt.Errorf("token: extra claim %q would replace a registered claim", k)
		}
		all[k] = v
	}
	return json.Marshal(all)
}
