package install

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
)

// ValuesDoc renders the values reference of install/README.md from the chart's values.yaml: one
// table row per value, its description taken from the `# --` comment above the key. A key that
// holds documented keys is a section and gets no row of its own; every other key must carry a
// `# --` comment, so an undocumented value is an error rather than a silent gap.
func ValuesDoc(valuesYAML []byte) ([]byte, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(valuesYAML, &root); err != nil {
		return nil, fmt.Errorf("values.yaml: %w", err)
	}
	if len(root.Content) != 1 || root.Content[0].Kind != yaml.MappingNode {
		return nil, fmt.Errorf("values.yaml: top level is not a mapping")
	}
	var b bytes.Buffer
	b.WriteString("| value | default | meaning |\n|---|---|---|\n")
	if err := walkValues(&b, "", root.Content[0]); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func walkValues(b *bytes.Buffer, prefix string, m *yaml.Node) error {
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		path := k.Value
		if prefix != "" {
			path = prefix + "." + k.Value
		}
		desc, documented := docComment(k.HeadComment)
		if v.Kind == yaml.MappingNode && len(v.Content) > 0 && documentsChildren(v) {
			if err := walkValues(b, path, v); err != nil {
				return err
			}
			continue
		}
		if !documented {
			return fmt.Errorf("values.yaml: %s has no `# --` comment", path)
		}
		def, err := defaultText(v)
		if err != nil {
			return fmt.Errorf("values.yaml: %s: %w", path, err)
		}
		fmt.Fprintf(b, "| `%s` | %s | %s |\n", path, def, strings.ReplaceAll(desc, "|", `\|`))
	}
	return nil
}

// documentsChildren reports whether any key below mapping m carries a `# --` comment.
func documentsChildren(m *yaml.Node) bool {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if _, ok := docComment(m.Content[i].HeadComment); ok {
			return true
		}
		if v := m.Content[i+1]; v.Kind == yaml.MappingNode && documentsChildren(v) {
			return true
		}
	}
	return false
}

// docComment returns the text of the last `# --` comment block in a key's head comment (plain
// comments before it are notes for the file's reader).
func docComment(head string) (string, bool) {
	lines := strings.Split(head, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		l := strings.TrimSpace(lines[i])
		if rest, ok := strings.CutPrefix(l, "# --"); ok {
			parts := []string{strings.TrimSpace(rest)}
			for _, c := range lines[i+1:] {
				parts = append(parts, strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(c), "#")))
			}
			return strings.Join(parts, " "), true
		}
	}
	return "", false
}

func defaultText(v *yaml.Node) (string, error) {
	if v.Kind == yaml.ScalarNode {
		if v.Value == "" {
			return "`\"\"`", nil
		}
		return "`" + v.Value + "`", nil
	}
	var x any
	if err := v.Decode(&x); err != nil {
		return "", err
	}
	j, err := json.Marshal(x)
	if err != nil {
		return "", err
	}
	return "`" + string(j) + "`", nil
}
