// Renders Go text/template cases for tests/export/test_gotemplate.py.
//
// Input (stdin): {"templates": {name: text}, "cases": [{"template": name, "data": {...}}]}
// Output (stdout): the same object with "expected" filled in for each case, rendered by Go's
// text/template with Option("missingkey=zero"), as Ollama does.
//
//	go run tests/export/data/render_go.go < cases.json > tests/export/data/go_rendered.json
package main

import (
	"bytes"
	"encoding/json"
	"os"
	"text/template"
)

type input struct {
	Templates map[string]string `json:"templates"`
	Cases     []map[string]any  `json:"cases"`
}

func main() {
	var in input
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		panic(err)
	}
	for _, c := range in.Cases {
		name := c["template"].(string)
		tmpl := template.Must(template.New(name).Option("missingkey=zero").Parse(in.Templates[name]))
		var out bytes.Buffer
		if err := tmpl.Execute(&out, c["data"]); err != nil {
			c["error"] = err.Error()
		} else {
			c["expected"] = out.String()
		}
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", " ")
	if err := enc.Encode(in); err != nil {
		panic(err)
	}
}
