"""`distill-gui export`: files, bad input (exit 2, nothing written), register against the Ollama test server."""

from __future__ import annotations

import json
import shutil

import pytest

from distill_gui.cli import main


@pytest.fixture(scope="module")
def student(tmp_path_factory, tiny_texts):
    """A small Qwen2 student folder with a ChatML tokenizer (built once for this module)."""
    from distill_gui.workflows.tiny import make_tiny_model, save_tokenizer, train_bpe_tokenizer

    tok = train_bpe_tokenizer(tiny_texts, vocab_size=512, style="qwen")
    folder = tmp_path_factory.mktemp("run") / "final"
    model = make_tiny_model("qwen2", len(tok), tie=True, init_std=0.2, eos_token_id=tok.eos_token_id)
    model.save_pretrained(str(folder))
    save_tokenizer(tok, folder)
    return folder


def _copy(folder, dest, *, without=(), config=None):
    shutil.copytree(folder, dest, ignore=shutil.ignore_patterns(*without))
    if config:
        data = json.loads((dest / "config.json").read_text())
        data.update(config)
        (dest / "config.json").write_text(json.dumps(data))
    return dest


def test_export_writes_gguf_and_modelfile(student, tmp_path, capsys):
    out = tmp_path / "export"
    assert main(["export", str(student), "--out", str(out), "--name", "my-student", "--type", "q8_0"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["Modelfile", "my-student.gguf"]   # no temp files left
    stdout = capsys.readouterr().out
    assert f"ollama create my-student -f {out / 'Modelfile'}" in stdout
    assert "TEMPLATE for chatml" in stdout
    modelfile = (out / "Modelfile").read_text()
    assert "FROM ./my-student.gguf" in modelfile and 'PARAMETER stop "<|im_end|>"' in modelfile

    import gguf

    reader = gguf.GGUFReader(str(out / "my-student.gguf"))
    assert reader.fields["general.file_type"].contents() == 7   # MOSTLY_Q8_0
    assert reader.fields["general.name"].contents() == "my-student"


def test_default_name_comes_from_the_run_folder(student, tmp_path):
    out = tmp_path / "export"
    assert main(["export", str(student), "--out", str(out)]) == 0
    assert (out / f"{student.parent.name}.gguf").is_file()


@pytest.mark.parametrize("case", ["architecture", "tokenizer", "folder", "name", "type", "quantize"])
def test_bad_input_is_a_clear_error_with_exit_2_and_no_files(case, student, tmp_path, capsys):
    model, out = student, tmp_path / "out"
    extra: list[str] = []
    expected = {
        "architecture": "architecture GPT2LMHeadModel is not supported",
        "tokenizer": "has no tokenizer",
        "folder": "cannot write into the output folder",
        "name": "is not a valid Ollama model name",
        "type": "GGUF type 'q3_k' is not supported",
        "quantize": "Ollama can only quantize F16 or BF16",
    }[case]
    if case == "architecture":
        model = _copy(student, tmp_path / "gpt2", config={"architectures": ["GPT2LMHeadModel"]})
    elif case == "tokenizer":
        model = _copy(student, tmp_path / "no-tok", without=("tokenizer*",))
    elif case == "folder":
        (tmp_path / "a-file").write_text("x")
        out = tmp_path / "a-file" / "out"
    elif case == "name":
        extra = ["--name", "bad name!"]
    elif case == "type":
        extra = ["--type", "q3_k"]
    else:
        extra = ["--type", "f32", "--quantize", "q4_K_M"]

    code = main(["export", str(model), "--out", str(out), *extra])

    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and expected in err and "Traceback" not in err
    assert not out.exists() or list(out.iterdir()) == []


def test_register_uploads_creates_verifies_and_probes(student, tmp_path, ollama_server, capsys):
    out = tmp_path / "export"
    code = main(["export", str(student), "--out", str(out), "--name", "me/student:v1", "--register",
                 "--quantize", "q4_K_M", "--system", "Be brief.", "--ollama-host", ollama_server.url])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "registered me/student:v1" in captured.out
    (create,) = ollama_server.requests_to("/api/create")
    gguf_path = out / "student-v1.gguf"
    assert create.body["model"] == "me/student:v1" and create.body["quantize"] == "q4_K_M"
    assert list(create.body["files"]) == ["student-v1.gguf"]
    assert create.body["system"] == "Be brief."
    assert create.body["parameters"] == {"stop": ["<|im_start|>", "<|im_end|>"], "num_ctx": 512}
    assert create.body["template"].startswith("{{- range .Messages }}<|im_start|>")
    uploads = ollama_server.requests_to(f"/api/blobs/{create.body['files']['student-v1.gguf']}", "POST")
    assert uploads and uploads[0].body == gguf_path.stat().st_size   # the whole file went up
    assert ollama_server.requests_to("/api/show") and ollama_server.requests_to("/api/chat")


def test_ollama_down_keeps_the_files_and_says_how_to_register(student, tmp_path, capsys):
    import socket

    with socket.socket() as sock:   # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    out = tmp_path / "export"
    code = main(["export", str(student), "--out", str(out), "--name", "student", "--register", "--ollama-host", dead])
    err = capsys.readouterr().err
    assert code == 1
    assert "not running" in err and f"ollama create student -f {out / 'Modelfile'}" in err
    assert (out / "student.gguf").is_file() and (out / "Modelfile").is_file()


def test_a_probe_chat_that_does_not_stop_fails_the_export(student, tmp_path, ollama_server, capsys):
    ollama_server.created_model_defaults = {"endless": True}   # as with a wrong template in real life
    code = main(["export", str(student), "--out", str(tmp_path / "e"), "--name", "student", "--register",
                 "--ollama-host", ollama_server.url])
    err = capsys.readouterr().err
    assert code == 1 and "did not stop by itself" in err and "'length'" in err
