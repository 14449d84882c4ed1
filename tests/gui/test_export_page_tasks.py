"""The Export page's worker functions (Qt-free): Modelfile text -> create parts, checkpoint staging,
names with version tags, cancelling without leftovers, register + probe against the test server."""

from __future__ import annotations

import shutil

import pytest

from distill_gui.errors import ExportInputError
from distill_gui.export import build_modelfile
from distill_gui.export.modelfile_parse import parse_modelfile, with_from
from distill_gui.gui.export_tasks import (
    CancelFlag,
    Cancelled,
    export_files,
    register_files,
    stage_checkpoint,
    suggest_name,
)
from distill_gui.ollama import RegisterError
from distill_gui.runfolder import RunFolder


def test_generated_modelfile_parses_back_into_its_parts(tiny_pair):
    spec = build_modelfile(tiny_pair[1], "student.gguf", system='Say "hi" first.\nThen answer.', num_ctx=256)
    parts = parse_modelfile(spec.text)
    assert parts.from_ == "./student.gguf"
    assert (parts.template, parts.system, parts.parameters) == (spec.template, spec.system, spec.parameters)
    assert parts.parameters["stop"] == spec.stop and len(spec.stop) >= 1


def test_parameters_get_ollamas_types_and_stop_repeats():
    parts = parse_modelfile('FROM ./m.gguf\n# a comment\nparameter temperature 0.25\nPARAMETER num_ctx 2048\n'
                            'PARAMETER stop "<|im_end|>"\nPARAMETER stop </s>\nPARAMETER use_mmap false\n'
                            'SYSTEM You are terse.\nTEMPLATE """{{ .Prompt }}"""\n')
    assert parts.parameters == {"temperature": 0.25, "num_ctx": 2048, "stop": ["<|im_end|>", "</s>"],
                                "use_mmap": False}
    assert (parts.system, parts.template) == ("You are terse.", "{{ .Prompt }}")


@pytest.mark.parametrize("text, message", [
    ("FROM ./m.gguf\nPARAMETER temprature 0.3\n", "line 2: unknown parameter 'temprature'"),
    ("FROM ./m.gguf\nPARAMETER num_ctx lots\n", "line 2: PARAMETER num_ctx must be a whole number"),
    ('FROM ./m.gguf\nTEMPLATE """{{ .Prompt }}\n', 'line 2: the """ opened here is never closed'),
    ("FROM ./m.gguf\nADAPTER ./lora.gguf\n", "line 2: ADAPTER cannot be sent by Register"),
    ("FROM ./m.gguf\nSTOP now\n", "line 2: unknown instruction STOP"),
    ("PARAMETER num_ctx 512\n", "no FROM line"),
])
def test_modelfile_mistakes_name_the_line(text, message):
    with pytest.raises(ExportInputError, match=message):
        parse_modelfile(text)


def test_from_points_at_the_exported_file():
    assert with_from("# x\nFROM ./old.gguf\nSYSTEM hi\n", "new.gguf") == "# x\nFROM ./new.gguf\nSYSTEM hi\n"
    assert with_from("SYSTEM hi\n", "new.gguf") == "FROM ./new.gguf\nSYSTEM hi\n"


def test_version_tag_is_one_above_the_highest_installed():
    assert suggest_name("qwen05", []) == "qwen05:v1"
    assert suggest_name("qwen05", ["qwen05:v1", "QWEN05:v3", "qwen05:latest", "qwen05-b:v9"]) == "qwen05:v4"


def test_a_checkpoint_is_staged_with_the_runs_tokenizer(engine_runs, tiny_pair, tmp_path):
    run = shutil.copytree(engine_runs["stopped-run"], tmp_path / "stopped-run")
    choices = RunFolder(run).exportable()
    assert choices[0] == "final" and choices[1:] and all(c.startswith("step-") for c in choices[1:])
    checkpoint = run / "checkpoints" / choices[1]
    assert not (checkpoint / "tokenizer.json").exists()
    staged = stage_checkpoint(checkpoint, run, tmp_path / "staging")
    assert (staged / "tokenizer.json").read_bytes() == (run / "final" / "tokenizer.json").read_bytes()
    weights = sorted(p.name for p in checkpoint.glob("*.safetensors"))
    assert weights and sorted(p.name for p in staged.glob("*.safetensors")) == weights
    assert (staged / weights[0]).stat().st_ino == (checkpoint / weights[0]).stat().st_ino   # linked, not copied
    files = export_files(staged, tmp_path / "out", gguf_type="f16", name="stopped-run-step:v1",
                         modelfile_text=build_modelfile(staged, "x.gguf").text)
    assert files.gguf_path.is_file() and files.gguf_path.name == "stopped-run-step-v1.gguf"

    shutil.rmtree(run / "final")              # no final/ yet: the run's student folder has the tokenizer
    staged = stage_checkpoint(checkpoint, run, tmp_path / "staging2")
    assert (staged / "tokenizer.json").read_bytes() == (tiny_pair[1] / "tokenizer.json").read_bytes()
    config = run / "config.toml"
    config.write_text(config.read_text().replace(str(tiny_pair[1]), str(tmp_path / "gone")))
    with pytest.raises(ExportInputError, match="has no tokenizer"):   # none anywhere: say so, export nothing
        stage_checkpoint(checkpoint, run, tmp_path / "staging3")


def test_cancel_leaves_no_file(tiny_pair, tmp_path):
    cancel = CancelFlag()
    cancel.set()
    out = tmp_path / "out"
    with pytest.raises(Cancelled):
        export_files(tiny_pair[1], out, gguf_type="f16", name="student:v1",
                     modelfile_text=build_modelfile(tiny_pair[1], "x.gguf").text, cancel=cancel)
    assert list(out.iterdir()) == []


def test_a_bad_request_writes_nothing(tiny_pair, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ExportInputError, match="Ollama can only quantize F16 or BF16"):
        export_files(tiny_pair[1], out, gguf_type="q8_0", name="s:v1", quantize="q4_K_M",
                     modelfile_text="FROM ./x.gguf\n")
    with pytest.raises(ExportInputError, match="unknown parameter"):
        export_files(tiny_pair[1], out, gguf_type="f16", name="s:v1", modelfile_text="FROM x\nPARAMETER foo 1\n")
    assert not out.exists()


def test_register_sends_the_modelfile_parts_and_probes(tiny_pair, tmp_path, ollama_server):
    spec = build_modelfile(tiny_pair[1], "x.gguf", system="Be brief.")
    text = spec.text + "PARAMETER temperature 0.3\n"
    files = export_files(tiny_pair[1], tmp_path / "out", gguf_type="f16", name="student:v1", modelfile_text=text)
    events = []
    outcome = register_files("student:v1", files.gguf_path, text, quantize="q4_K_M", host=ollama_server.url,
                             on_event=events.append)
    create = ollama_server.requests_to("/api/create")[0].body
    assert create["template"] == spec.template and create["system"] == "Be brief."
    assert create["parameters"] == {**spec.parameters, "temperature": 0.3} and create["quantize"] == "q4_K_M"
    assert create["files"] == {"student-v1.gguf": outcome_digest(ollama_server)}
    assert outcome.stops == spec.stop and outcome.template_checked and outcome.quantization == "Q4_K_M"
    assert outcome.uploaded == files.gguf_path.stat().st_size
    phases = [e.phase for e in events]
    assert phases.index("register-upload") < phases.index("register-create") < phases.index("register-probe")

    ollama_server.created_model_defaults = {"endless": True}      # a model that never stops by itself
    with pytest.raises(RegisterError, match="did not stop by itself"):
        register_files("student:v2", files.gguf_path, text, host=ollama_server.url)


def outcome_digest(server) -> str:
    return next(r.path.split("/")[-1] for r in server.requests_to("/api/blobs/", "POST"))
