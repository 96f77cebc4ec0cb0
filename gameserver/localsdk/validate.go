package localsdk

import (
	"fmt"
	"regexp"
	"strings"
)

// Kubernetes label syntax (apimachinery's IsQualifiedName / IsValidLabelValue), written out
// because the whole of k8s.io/apimachinery is a heavy dependency for two regular expressions.
var (
	labelNameRE = regexp.MustCompile(`^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$`)
	dns1123RE   = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
)

const (
	labelNameMax  = 63
	labelValueMax = 63
	dnsSubdomMax  = 253
)

// validQualifiedName reports why key is not a valid label or annotation key, or nil.
func validQualifiedName(key string) error {
	name := key
	if i := strings.IndexByte(key, '/'); i >= 0 {
		prefix := key[:i]
		name = key[i+1:]
		if prefix == "" {
			return fmt.Errorf("key %q: prefix part must be non-empty", key)
		}
		if len(prefix) > dnsSubdomMax || !dns1123RE.MatchString(prefix) {
			return fmt.Errorf("key %q: prefix part must be a lowercase DNS subdomain of at most %d characters", key, dnsSubdomMax)
		}
	}
	if name == "" {
		return fmt.Errorf("key %q: name part must be non-empty", key)
	}
	if len(name) > labelNameMax {
		return fmt.Errorf("key %q: name part must be no more than %d characters", key, labelNameMax)
	}
	if !labelNameRE.MatchString(name) {
		return fmt.Errorf("key %q: name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character", key)
	}
	return nil
}

// validLabelValue reports why v is not a valid label value, or nil.
func validLabelValue(v string) error {
	if v == "" {
		return nil
	}
	if len(v) > labelValueMax {
		return fmt.Errorf("value %q: must be no more than %d characters", v, labelValueMax)
	}
	if !labelNameRE.MatchString(v) {
		return fmt.Errorf("value %q: must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character", v)
	}
	return nil
}

// ValidateLabel reports why key=value is not a valid Kubernetes label, or nil.
func ValidateLabel(key, value string) error {
	if err := validQualifiedName(key); err != nil {
		return err
	}
	return validLabelValue(value)
}
