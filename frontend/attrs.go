package frontend

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/kumi-dev/kumi/api/openmatch"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"
)

// maxAttributes bounds a request's attribute count independently of the allow-list size.
const maxAttributes = 64

// checkAttributes validates attrs against the allow-list and the caller's verified token claims,
// and returns the Open Match search fields and a canonical key (equal attributes ⇔ equal keys) for
// the one-live-ticket comparison.
func checkAttributes(allow Attributes, maxString int, attrs map[string]*structpb.Value, claims map[string]any) (*openmatch.SearchFields, string, error) {
	if len(attrs) > maxAttributes {
		return nil, "", fieldErr("attributes", "%d attributes, at most %d allowed", len(attrs), maxAttributes)
	}
	sf := &openmatch.SearchFields{}
	names := make([]string, 0, len(attrs))
	for name := range attrs {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		v := attrs[name]
		a, ok := allow.find(name)
		if !ok {
			return nil, "", fieldErr("attributes."+name, "attribute %q is not allowed (allowed: %s)", name, allowedNames(allow))
		}
		field := "attributes." + name
		if a.Claim != "" {
			if err := claimAllows(a, v, claims); err != nil {
				return nil, "", err
			}
		}
		switch k := v.GetKind().(type) {
		case *structpb.Value_StringValue:
			if a.Type != String {
				return nil, "", fieldErr(field, "attribute %q must be a %s, got a string", name, a.Type)
			}
			s := k.StringValue
			if len(s) > maxString || !utf8.ValidString(s) {
				return nil, "", fieldErr(field, "attribute %q must be valid UTF-8 of at most %d bytes", name, maxString)
			}
			if len(a.Enum) > 0 && !slices.Contains(a.Enum, s) {
				return nil, "", fieldErr(field, "attribute %q value %q not allowed (allowed: %s)", name, s, strings.Join(a.Enum, ", "))
			}
			if sf.StringArgs == nil {
				sf.StringArgs = map[string]string{}
			}
			sf.StringArgs[name] = s
		case *structpb.Value_NumberValue:
			if a.Type != Number {
				return nil, "", fieldErr(field, "attribute %q must be a %s, got a number", name, a.Type)
			}
			n := k.NumberValue
			if math.IsNaN(n) || math.IsInf(n, 0) {
				return nil, "", fieldErr(field, "attribute %q must be a finite number", name)
			}
			if (a.Min != 0 || a.Max != 0) && (n < a.Min || n > a.Max) {
				return nil, "", fieldErr(field, "attribute %q = %g is outside %g..%g", name, n, a.Min, a.Max)
			}
			if sf.DoubleArgs == nil {
				sf.DoubleArgs = map[string]float64{}
			}
			sf.DoubleArgs[name] = n
		case *structpb.Value_BoolValue:
			if a.Type != Bool {
				return nil, "", fieldErr(field, "attribute %q must be a %s, got a bool", name, a.Type)
			}
			if k.BoolValue {
				sf.Tags = append(sf.Tags, name)
			}
		default:
			return nil, "", fieldErr(field, "attribute %q must be a %s, got %s", name, a.Type, kindName(v))
		}
	}
	for _, a := range allow {
		if _, ok := attrs[a.Name]; a.Required && !ok {
			return nil, "", fieldErr("attributes."+a.Name, "attribute %q (%s) is required", a.Name, a.Type)
		}
	}
	return sf, canonicalKey(attrs), nil
}

// claimAllows checks a claim-sourced attribute: a string must be the claim's string or one of its
// list of strings (a "groups" claim lists every chat group the player may join); a number or bool
// must equal the claim. The error names the claim, not its values: the player holds the token and
// can read them, but logs and proxies of the response need not.
func claimAllows(a Attribute, v *structpb.Value, claims map[string]any) error {
	field := "attributes." + a.Name
	c, ok := claims[a.Claim]
	if !ok {
		return &apiError{code: codes.PermissionDenied, field: field, msg: fmt.Sprintf(
			"attribute %q comes from claim %q of the player token, and this token has no such claim; the identity provider must issue it (see frontend/doc.go)", a.Name, a.Claim)}
	}
	allowed := false
	switch k := v.GetKind().(type) {
	case *structpb.Value_StringValue:
		switch cv := c.(type) {
		case string:
			allowed = cv == k.StringValue
		case []any:
			allowed = slices.Contains(cv, any(k.StringValue))
		}
	case *structpb.Value_NumberValue:
		cv, isNum := c.(float64)
		allowed = isNum && cv == k.NumberValue
	case *structpb.Value_BoolValue:
		cv, isBool := c.(bool)
		allowed = isBool && cv == k.BoolValue
	default:
		return nil // the type check that follows explains the wrong type
	}
	if !allowed {
		return &apiError{code: codes.PermissionDenied, field: field, msg: fmt.Sprintf(
			"attribute %q value not allowed by claim %q of the player token; only values the identity provider granted may be used", a.Name, a.Claim)}
	}
	return nil
}

func allowedNames(allow Attributes) string {
	n := make([]string, len(allow))
	for i, a := range allow {
		n[i] = a.Name
	}
	return strings.Join(n, ", ")
}

func kindName(v *structpb.Value) string {
	switch v.GetKind().(type) {
	case *structpb.Value_NullValue, nil:
		return "null"
	case *structpb.Value_ListValue:
		return "a list"
	case *structpb.Value_StructValue:
		return "an object"
	}
	return "another type"
}

// canonicalKey is equal for equal attribute maps, whatever their order.
func canonicalKey(attrs map[string]*structpb.Value) string {
	names := make([]string, 0, len(attrs))
	for name := range attrs {
		names = append(names, name)
	}
	sort.Strings(names)
	var key strings.Builder
	for _, name := range names {
		key.WriteString(strconv.Quote(name))
		key.WriteByte('=')
		switch k := attrs[name].GetKind().(type) {
		case *structpb.Value_StringValue:
			key.WriteString(strconv.Quote(k.StringValue))
		case *structpb.Value_NumberValue:
			key.WriteString(strconv.FormatFloat(k.NumberValue, 'g', -1, 64))
		case *structpb.Value_BoolValue:
			key.WriteString(strconv.FormatBool(k.BoolValue))
		default:
			key.WriteString("?")
		}
		key.WriteByte(',')
	}
	return key.String()
}
