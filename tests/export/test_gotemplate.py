"""The Go template evaluator agrees with Go's text/template on everything we emit.

Expected outputs in data/go_rendered.json were rendered by Go 1.19 text/template (data/render_go.go)
from the cases data/make_go_cases.py writes; regenerate both when the emitted templates change.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from distill_gui.export import gotemplate
from distill_gui.export.chat_templates import _variants

DATA = json.loads((Path(__file__).parent / "data" / "go_rendered.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("case", DATA["cases"], ids=lambda c: c["template"][:40])
def test_evaluator_renders_like_go_text_template(case):
    assert gotemplate.render(DATA["templates"][case["template"]], case["data"]) == case["expected"]


def test_the_go_fixture_covers_the_templates_we_emit_today():
    """Fails when an emitted template changes without regenerating the Go fixture."""
    emitted = {name: go for family in ("chatml", "llama3", "gemma", "phi3", "zephyr")
               for name, go in _variants(family, "<s>", "</s>")}
    emitted.update(_variants("inst", "<s>", "</s>")[::6])
    assert {name: DATA["templates"].get(name) for name in emitted} == emitted


@pytest.mark.parametrize("source", [
    "{{ .A | printf }}", "{{ with .A }}x{{ end }}", "{{ define \"t\" }}x{{ end }}", "{{ if .A }}x",
    "{{ end }}", "{{ printf \"%s\" .A }}",
])
def test_constructs_outside_the_subset_are_refused(source):
    with pytest.raises(gotemplate.TemplateError):
        gotemplate.render(source, {"A": "a"})
