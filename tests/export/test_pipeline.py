"""export_model and the writer's guarantees: progress, size estimate, streaming blocks, no partial files."""

from __future__ import annotations

import pytest

import distill_gui.export as export_api
from distill_gui.errors import ExportError, ExportInputError
from distill_gui.export import estimate_gguf_size, export_gguf, export_model, gguf_file, validate_ollama_name
from distill_gui.export.names import default_model_name, gguf_file_name


def test_public_surface_is_pinned():
    assert sorted(export_api.__all__) == sorted(
        ["GGUF_TYPE_NAMES", "OLLAMA_QUANTIZE_TYPES", "ExportResult", "GGUFExportInfo", "ModelfileSpec",
         "build_modelfile", "check_quantize", "default_model_name", "estimate_gguf_size", "export_gguf",
         "export_model", "validate_ollama_name"])


def test_export_model_writes_both_files_and_reports_progress(model_factory, tmp_path):
    folder, _, _ = model_factory("llama", False)
    events = []
    result = export_model(folder, tmp_path / "out", name="tiny-llama", on_progress=events.append)
    assert result.gguf_path == tmp_path / "out" / "tiny-llama.gguf" and result.gguf_path.is_file()
    assert result.modelfile_path.read_text() == result.modelfile.text
    assert result.modelfile.family == "llama3" and result.modelfile_text == result.modelfile.text
    assert result.register_hint() == f"ollama create tiny-llama -f {result.modelfile_path}"
    done = [e.done for e in events]
    assert all(e.phase == "export" and e.unit == "B" for e in events)
    assert done == sorted(done) and done[-1] <= events[-1].total
    assert events[-1].total + 32 * len(result.gguf.tensor_types) >= done[-1] >= 0.99 * events[-1].total


@pytest.mark.parametrize("gguf_type", ["f32", "f16", "q8_0", "q4_0"])
def test_size_estimate_is_close_to_the_written_file(gguf_type, model_factory, tmp_path):
    folder, _, _ = model_factory("qwen2", True)
    estimate = estimate_gguf_size(folder, gguf_type)
    info = export_gguf(folder, tmp_path / "m.gguf", gguf_type=gguf_type)
    assert abs(estimate - info.nbytes) <= 0.05 * info.nbytes


def test_small_blocks_write_the_same_bytes(model_factory, tmp_path, monkeypatch):
    """Tensors streamed in many small row blocks give the identical file."""
    folder, _, _ = model_factory("qwen3", False)
    whole = export_gguf(folder, tmp_path / "whole.gguf", gguf_type="q8_0").path.read_bytes()
    monkeypatch.setattr(gguf_file, "_CHUNK_BYTES", 300)
    blocks = []
    monkeypatch.setattr(gguf_file, "_convert", _counting(gguf_file._convert, blocks))
    streamed = export_gguf(folder, tmp_path / "streamed.gguf", gguf_type="q8_0").path.read_bytes()
    assert streamed == whole
    assert len(blocks) > 3 * len(gguf_file.plan_export(folder, "q8_0", with_vocab=False).tensors)


def _counting(function, calls):
    def wrapper(*args, **kwargs):
        calls.append(1)
        return function(*args, **kwargs)
    return wrapper


def test_a_failure_while_writing_leaves_no_partial_file(model_factory, tmp_path, monkeypatch):
    folder, _, _ = model_factory("qwen2", False)
    real = gguf_file._block_jobs
    seen = []

    def failing(checkpoint, tensor):
        seen.append(tensor.name)
        if len(seen) == 3:
            raise OSError(28, "No space left on device")
        return real(checkpoint, tensor)

    monkeypatch.setattr(gguf_file, "_block_jobs", failing)
    out = tmp_path / "out"
    with pytest.raises(ExportError, match="No space left on device"):
        export_model(folder, out, name="student")
    assert list(out.iterdir()) == []


def test_an_existing_file_is_replaced_only_when_the_new_one_is_complete(model_factory, tmp_path, monkeypatch):
    folder, _, _ = model_factory("qwen2", False)
    target = tmp_path / "m.gguf"
    target.write_bytes(b"previous export")
    monkeypatch.setattr(gguf_file, "_convert", lambda *a: (_ for _ in ()).throw(OSError(5, "I/O error")))
    with pytest.raises(ExportError):
        export_gguf(folder, target)
    assert target.read_bytes() == b"previous export" and [p.name for p in tmp_path.iterdir()] == ["m.gguf"]


def test_unknown_tensors_and_unmerged_lora_are_named(model_factory, tmp_path):
    import json
    import shutil
    import struct

    folder, _, _ = model_factory("qwen2", False)
    odd = tmp_path / "odd"
    shutil.copytree(folder, odd)
    header = {"base_model.model.layers.0.self_attn.q_proj.lora_A.weight": {"dtype": "F32", "shape": [2, 2],
                                                                              "data_offsets": [0, 16]}}
    blob = json.dumps(header).encode()
    (odd / "adapter.safetensors").write_bytes(struct.pack("<Q", len(blob)) + blob + bytes(16))
    with pytest.raises(ExportInputError, match="unmerged LoRA"):
        export_gguf(odd, tmp_path / "x.gguf")
    assert not (tmp_path / "x.gguf").exists()


@pytest.mark.parametrize("name", ["student", "me/student:q8", "student-0.5b_v2:latest", "host.io/me/student:1"])
def test_valid_ollama_names(name):
    assert validate_ollama_name(name) == name


@pytest.mark.parametrize("name", ["", "bad name", "-student", "a..b", "me/stu/dent/x", "x:y:z", "ns.x/model",
                                  "student:", "ünicode", "x" * 129])
def test_invalid_ollama_names(name):
    with pytest.raises(ExportInputError, match="not a valid Ollama model name"):
        validate_ollama_name(name)


def test_default_names_and_file_names(tmp_path):
    assert default_model_name(tmp_path / "My Run!" / "final") == "my-run"
    assert default_model_name(tmp_path / "r1" / "checkpoints" / "step-200") == "r1-step-200"
    assert default_model_name(tmp_path / "Qwen2.5-0.5B") == "qwen2.5-0.5b"
    assert validate_ollama_name(default_model_name(tmp_path / "..." / "final"))
    assert gguf_file_name("me/student:q8") == "student-q8.gguf" and gguf_file_name("s:latest") == "s.gguf"


def test_bulk_packed_metadata_is_byte_identical_to_the_stock_writer(tmp_path):
    import gguf

    outputs = []
    for writer_class in (gguf.GGUFWriter, gguf_file._fast_writer_class()):
        path = tmp_path / f"{writer_class.__name__}.gguf"
        writer = writer_class(str(path), "llama")
        writer.add_token_list([f"tok{i}é\u0120" for i in range(300)])
        writer.add_token_merges([f"a{i} b{i}" for i in range(300)])
        writer.add_token_types([1, 3, 6] * 100)
        writer.add_token_scores([-0.5 * i for i in range(300)])
        writer.add_array("test.short", [1, 2, 3])
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        writer.close()
        outputs.append(path.read_bytes())
    assert outputs[0] == outputs[1]
    mixed = gguf_file._fast_writer_class()(str(tmp_path / "mixed.gguf"), "llama")
    mixed.add_array("test.mixed", [1] * 70 + [2.5])
    mixed.write_header_to_file()
    with pytest.raises(ValueError):   # refused like the stock writer refuses it
        mixed.write_kv_data_to_file()
    mixed.close()


def test_raising_from_the_progress_callback_cancels_without_leftovers(model_factory, tmp_path):
    folder, _, _ = model_factory("qwen2", False)

    class Cancelled(Exception):
        pass

    def cancel_at_half(event):
        if event.done > event.total / 2:
            raise Cancelled()

    out = tmp_path / "out"
    with pytest.raises(Cancelled):
        export_model(folder, out, name="student", on_progress=cancel_at_half)
    assert list(out.iterdir()) == []


def test_untied_status_is_inferred_when_the_config_does_not_say(model_factory, tmp_path):
    import json
    import shutil

    for tie in (True, False):
        folder, _, _ = model_factory("qwen2", tie)
        copy = tmp_path / f"tie-{tie}"
        shutil.copytree(folder, copy)
        config = json.loads((copy / "config.json").read_text())
        del config["tie_word_embeddings"]
        (copy / "config.json").write_text(json.dumps(config))
        names = [t.name for t in gguf_file.plan_export(copy, "f16", with_vocab=False).tensors]
        assert ("output.weight" in names) is (not tie)


def test_the_written_file_gets_the_usual_permissions(model_factory, tmp_path):
    import os
    import stat

    folder, _, _ = model_factory("qwen2", False)
    umask = os.umask(0o022)
    try:
        info = export_gguf(folder, tmp_path / "m.gguf")
    finally:
        os.umask(umask)
    assert stat.S_IMODE(info.path.stat().st_mode) == 0o644
