"""Write the input of render_go.go: every Go template variant we may emit (a sample of the [INST] knob
combinations) on the probe conversations, plus snippets that pin the evaluator's Go semantics.

    python tests/export/data/make_go_cases.py > /tmp/cases.json
    go run tests/export/data/render_go.go < /tmp/cases.json > tests/export/data/go_rendered.json
"""

from __future__ import annotations

import json
import sys

from distill_gui.export.chat_templates import PROBES, _variants, ollama_values

SNIPPETS = {
    "trim": "a  {{- \"b\" -}}  \n c {{ \"d\" }} \n{{- \"e\" }}",
    "comment": "x {{- /* hidden */ -}} y{{/* z */}}",
    "range-else": "{{ range .Empty }}item{{ else }}none{{ end }}|{{ range $i, $x := .List }}{{ $i }}={{ $x }};{{ end }}",
    "and-or": "{{ and .One .Zero .Two }}|{{ or .Zero .Empty .Two }}|{{ and .One .Two }}|{{ or .Zero \"\" }}|{{ not .Zero }}",
    "eq-multi": "{{ eq .Name \"x\" \"abc\" }}|{{ eq .Name \"b\" \"c\" }}|{{ ne .Name \"a\" }}|{{ lt .One .Two }}",
    "slice-len": "{{ len .List }}|{{ len (slice .List 1) }}|{{ slice .Name 1 }}|{{ index .List 2 }}|{{ len (slice .List 1 2) }}",
    "vars": "{{ $x := 1 }}{{ range .List }}{{ $x = . }}{{ end }}{{ $x }}|{{ if true }}{{ $y := 5 }}{{ $y }}{{ end }}|{{ $.Name }}",
    "dot": "{{ range .Items }}{{ .K }}:{{ $.Name }}{{ if .V }}+{{ else if .W }}~{{ else }}-{{ end }} {{ end }}",
    "missing": "[{{ .Nope }}][{{ if .Nope }}yes{{ else }}no{{ end }}]",
}
SNIPPET_DATA = {"Empty": [], "List": ["p", "q", "r"], "One": 1, "Zero": 0, "Two": 2, "Name": "abc",
                "Items": [{"K": "a", "V": True}, {"K": "b", "V": False, "W": "w"}, {"K": "c", "V": ""}]}


def main() -> None:
    templates, cases = dict(SNIPPETS), [{"template": name, "data": SNIPPET_DATA} for name in SNIPPETS]
    for family in ("chatml", "llama3", "inst", "gemma", "phi3", "zephyr"):
        variants = _variants(family, "<s>", "</s>")
        if family == "inst":
            variants = variants[::6]   # every 6th knob combination: all knobs vary across the sample
        for name, go in variants:
            templates[name] = go
            for probe in PROBES:
                cases.append({"template": name, "data": ollama_values(probe, None)})
            cases.append({"template": name, "data": ollama_values(PROBES[1], "Default system.")})
    json.dump({"templates": templates, "cases": cases}, sys.stdout)


if __name__ == "__main__":
    main()
