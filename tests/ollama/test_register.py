"""register_model: blobs (only missing ones), create (never `modelfile`), read-back check, failures."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import gguf
import numpy as np
import pytest

from distill_gui.errors import EXIT_USER_ERROR
from distill_gui.ollama import OllamaClient, OllamaInputError, OllamaUnavailable, RegisterError, register_model

CHATML_JINJA = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
                "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
GO_TEMPLATE = ("{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
               "<|im_start|>assistant\n")
STOPS = {"stop": ["<|im_end|>", "<|endoftext|>"], "num_ctx": 4096, "temperature": 0.7}


def tiny_gguf(path: Path, *, arch: str = "qwen2", file_type: int = 1, chat_template: str | None = CHATML_JINJA,
              rows: int = 64) -> Path:
    """A small but real GGUF file (read back by the test server with gguf.GGUFReader)."""
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_context_length(32768)
    writer.add_embedding_length(896)
    writer.add_file_type(file_type)
    writer.add_uint64("general.parameter_count", 494_032_768)
    if chat_template is not None:
        writer.add_chat_template(chat_template)
    writer.add_tensor("token_embd.weight", np.arange(rows * 8, dtype=np.float16).reshape(rows, 8))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def sha256(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def test_register_uploads_creates_and_verifies(ollama_server, client, tmp_path):
    model_file = tiny_gguf(tmp_path / "student.gguf")
    progress = []

    result = register_model(client, "student:latest", {"student.gguf": model_file}, template=GO_TEMPLATE,
                                   system="Be brief.", parameters=STOPS, quantize="q4_K_M",
                                   on_progress=progress.append)

    digest = sha256(model_file)
    size = model_file.stat().st_size
    assert result.digests == {"student.gguf": digest}
    assert (result.uploaded, result.skipped, result.bytes_uploaded) == (("student.gguf",), (), size)
    assert ollama_server.blobs[digest].read_bytes() == model_file.read_bytes()
    assert result.statuses[0] == "parsing GGUF" and result.statuses[-1] == "success"
    assert "quantizing F16 model to Q4_K_M" in result.statuses
    # exactly the documented request: files/template/system/parameters/quantize, never `modelfile`
    (create,) = ollama_server.requests_to("/api/create")
    assert create.body == {"model": "student:latest", "files": {"student.gguf": digest}, "template": GO_TEMPLATE,
                           "system": "Be brief.", "parameters": STOPS, "quantize": "q4_K_M", "stream": True}
    info = result.info
    assert (info.template, info.system, info.stop) == (GO_TEMPLATE, "Be brief.", STOPS["stop"])
    assert (info.family, info.quantization_level, info.parameter_size, info.context_length) == (
        "qwen2", "Q4_K_M", "494.03M", 32768)
    uploads = [p for p in progress if p.stage == "upload"]
    assert [p.completed for p in uploads] == sorted(p.completed for p in uploads)
    assert uploads[-1].completed == uploads[-1].total == size
    assert [p.stage for p in progress][0] == "hash" and progress[-1].stage == "verify"


def test_a_second_registration_uploads_nothing(ollama_server, client, tmp_path):
    model_file = tiny_gguf(tmp_path / "student.gguf")
    register_model(client, "a", {"student.gguf": model_file}, template=GO_TEMPLATE, parameters=STOPS)

    again = register_model(client, "b", {"student.gguf": model_file}, template=GO_TEMPLATE, parameters=STOPS)

    assert (again.uploaded, again.skipped, again.bytes_uploaded) == ((), ("student.gguf",), 0)
    assert len(ollama_server.requests_to("/api/blobs", "POST")) == 1
    assert len(ollama_server.requests_to("/api/blobs", "HEAD")) == 2
    assert {m.name for m in client.list_models()} == {"a:latest", "b:latest"}


def test_a_registered_model_chats_and_probes_stop(ollama_server, client, tmp_path):
    model_file = tiny_gguf(tmp_path / "student.gguf")
    register_model(client, "student", {"student.gguf": model_file}, template=GO_TEMPLATE, parameters=STOPS)
    stats = client.probe_chat("student")
    assert stats.done_reason == "stop" and "student:latest" in stats.content


def test_without_template_the_gguf_chat_template_is_autodetected_with_a_warning(client, tmp_path):
    model_file = tiny_gguf(tmp_path / "student.gguf")
    result = register_model(client, "student", {"student.gguf": model_file})
    assert "using autodetected template chatml" in result.statuses
    assert result.info.stop == ["<|im_start|>", "<|im_end|>"]
    assert len(result.warnings) == 1 and "chatml" in result.warnings[0]


def test_a_gguf_without_any_template_registers_but_fails_the_probe(client, tmp_path):
    model_file = tiny_gguf(tmp_path / "bare.gguf", chat_template=None)
    register_model(client, "bare", {"bare.gguf": model_file})
    assert client.probe_chat("bare", max_tokens=32).done_reason == "length"


def test_a_template_that_did_not_land_is_a_register_error(ollama_server, client, tmp_path):
    ollama_server.created_model_defaults = {"template": "{{ .Prompt }}"}  # some other Go template
    with pytest.raises(RegisterError) as caught:
        register_model(client, "student", {"m.gguf": tiny_gguf(tmp_path / "m.gguf")}, template=GO_TEMPLATE,
                              parameters=STOPS)
    assert "chat template differs" in str(caught.value) and "ollama show student --modelfile" in str(caught.value)
    assert GO_TEMPLATE in caught.value.details


TOOLS_JINJA = CHATML_JINJA + "{% if tools %}<tools>{{ tools | tojson }}</tools>{% endif %}"


def test_ollama_preferring_the_ggufs_jinja_template_is_a_warning(ollama_server, client, tmp_path):
    """Ollama >= 0.30 runs a GGUF's tool-capable Jinja template instead of TEMPLATE; show reports it."""
    model_file = tiny_gguf(tmp_path / "m.gguf", chat_template=TOOLS_JINJA)
    result = register_model(client, "student", {"m.gguf": model_file}, template=GO_TEMPLATE, parameters=STOPS)
    assert result.info.template == TOOLS_JINJA
    assert any("chat template inside the GGUF" in warning for warning in result.warnings)
    assert client.probe_chat("student").done_reason == "stop"


def test_before_0_30_the_go_template_wins(ollama_server, client, tmp_path):
    ollama_server.version = "0.12.11"
    model_file = tiny_gguf(tmp_path / "m.gguf", chat_template=TOOLS_JINJA)
    result = register_model(client, "student", {"m.gguf": model_file}, template=GO_TEMPLATE, parameters=STOPS)
    assert result.info.template == GO_TEMPLATE and result.warnings == ()


def test_stop_parameters_that_did_not_land_are_a_register_error(ollama_server, client, tmp_path):
    ollama_server.created_model_defaults = {"parameters": {"stop": ["<|im_end|>"], "num_ctx": 4096,
                                                           "temperature": 0.7}}
    with pytest.raises(RegisterError) as caught:
        register_model(client, "student", {"m.gguf": tiny_gguf(tmp_path / "m.gguf")}, template=GO_TEMPLATE,
                              parameters=STOPS)
    message = str(caught.value)
    assert "parameter stop" in message and "<|endoftext|>" in message and "num_ctx" not in message


def test_quantizing_an_already_quantized_gguf_fails_with_advice(client, tmp_path):
    q8 = tiny_gguf(tmp_path / "q8.gguf", file_type=7)  # MOSTLY_Q8_0
    with pytest.raises(RegisterError) as caught:
        register_model(client, "student", {"q8.gguf": q8}, quantize="q4_K_M")
    assert "quantization is only supported for F16, BF16 and F32 models" in str(caught.value)
    assert "export F16" in str(caught.value)


def test_a_file_that_is_not_gguf_fails_as_an_error_line(client, tmp_path):
    junk = tmp_path / "model.gguf"
    junk.write_bytes(b"definitely not a gguf file" * 10)
    with pytest.raises(RegisterError) as caught:
        register_model(client, "student", {"model.gguf": junk})
    assert "not in GGUF format" in str(caught.value)


def _safetensors(path: Path, shapes: dict[str, list[int]]) -> Path:
    offsets, header = 0, {}
    for name, shape in shapes.items():
        size = int(np.prod(shape)) * 2
        header[name] = {"dtype": "F16", "shape": shape, "data_offsets": [offsets, offsets + size]}
        offsets += size
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(offsets))
    return path


def test_safetensors_of_an_architecture_ollama_cannot_convert(client, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["Qwen3ForCausalLM"]}))
    files = {"config.json": tmp_path / "config.json",
             "model.safetensors": _safetensors(tmp_path / "model.safetensors", {"w": [4, 4]})}
    with pytest.raises(RegisterError) as caught:
        register_model(client, "qwen3-student", files)
    assert 'unsupported architecture "Qwen3ForCausalLM"' in str(caught.value)
    assert "register a GGUF file instead" in str(caught.value)


def test_safetensors_of_a_known_architecture_convert(client, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"],
                                                      "max_position_embeddings": 2048, "hidden_size": 8}))
    files = {"config.json": tmp_path / "config.json",
             "model.safetensors": _safetensors(tmp_path / "model.safetensors", {"a": [1000, 1000], "b": [10]})}
    result = register_model(client, "llama-student", files, template=GO_TEMPLATE, parameters=STOPS)
    assert result.statuses[0] == "converting model"
    assert (result.info.family, result.info.parameter_size, result.info.quantization_level) == (
        "llama", "1.00M", "F16")


def test_a_file_changing_during_upload_is_a_digest_mismatch(ollama_server, client, tmp_path):
    model_file = tiny_gguf(tmp_path / "student.gguf")

    def tamper(progress):
        if progress.stage == "hash" and progress.completed == progress.total:
            data = bytearray(model_file.read_bytes())
            data[-1] ^= 0xFF
            model_file.write_bytes(bytes(data))

    with pytest.raises(RegisterError) as caught:
        register_model(client, "student", {"student.gguf": model_file}, on_progress=tamper)
    assert "changed while it was being uploaded" in str(caught.value)
    assert ollama_server.blobs == {} and ollama_server.requests_to("/api/create") == []


def test_an_exception_from_on_progress_aborts_the_upload(ollama_server, client, tmp_path):
    class Cancelled(Exception):
        pass

    def cancel(progress):
        if progress.stage == "upload" and progress.completed:
            raise Cancelled

    big = tiny_gguf(tmp_path / "s.gguf", rows=80_000)  # 1.3 MB: two upload pieces of 1 MiB
    with pytest.raises(Cancelled):
        register_model(client, "student", {"s.gguf": big}, on_progress=cancel)
    assert ollama_server.requests_to("/api/create") == [] and client.list_models() == []
    assert ollama_server.blobs == {}  # the upload stopped half way: nothing stored


@pytest.mark.parametrize("name, files, expected", [
    ("bad name!", {"m.gguf": "EXISTING"}, "not a valid Ollama model name"),
    ("student", {"../m.gguf": "EXISTING"}, "relative path"),
    ("student", {"C:\\m.gguf": "EXISTING"}, "relative path"),
    ("student", {"/abs/m.gguf": "EXISTING"}, "relative path"),
    ("student", {"m.gguf": "MISSING"}, "does not exist"),
    ("student", {}, "No files"),
])
def test_bad_input_is_refused_before_anything_is_sent(ollama_server, client, tmp_path, name, files, expected):
    existing = tiny_gguf(tmp_path / "m.gguf")
    files = {key: existing if value == "EXISTING" else tmp_path / "missing.gguf" for key, value in files.items()}
    with pytest.raises(OllamaInputError) as caught:
        register_model(client, name, files)
    assert expected in str(caught.value) and caught.value.exit_code == EXIT_USER_ERROR
    assert ollama_server.requests == []


def test_register_against_no_server_is_unavailable(dead_url, tmp_path):
    with OllamaClient(dead_url) as client:
        with pytest.raises(OllamaUnavailable):
            register_model(client, "student", {"m.gguf": tiny_gguf(tmp_path / "m.gguf")})
