"""Models: inspection without weights, the HF cache, the tokenizer check, deriving a student, device errors."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from distill_gui.engine import models as M
from distill_gui.engine.models import loading
from distill_gui.errors import ConfigError, ModelError
from distill_gui.settings import AppSettings, save_settings

from .helpers import load_weights


def test_inspect_local_folder_counts_parameters_from_weight_headers(tiny_pair):
    from transformers import AutoModelForCausalLM

    teacher_dir = tiny_pair[0]
    info = M.inspect_model(str(teacher_dir))
    model = AutoModelForCausalLM.from_pretrained(str(teacher_dir))
    assert info.parameters == sum(p.numel() for p in model.parameters()) and info.parameters_exact
    assert (info.architecture, info.model_type, info.layers, info.hidden_size) == ("Qwen2ForCausalLM", "qwen2", 4, 64)
    assert info.vocab_rows == model.config.vocab_size and info.tokenizer_vocab == 512
    assert info.chat_template and info.is_local
    assert "Qwen2ForCausalLM" in info.summary() and "chat template yes" in info.summary()


def test_inspect_estimates_parameters_when_no_weights_are_present(tiny_pair, tmp_path):
    from transformers import AutoModelForCausalLM

    folder = tmp_path / "config-only"
    shutil.copytree(tiny_pair[0], folder, ignore=shutil.ignore_patterns("*.safetensors"))
    info = M.inspect_model(str(folder))
    real = sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(str(tiny_pair[0])).parameters())
    assert not info.parameters_exact and "estimated" in info.notes[0]
    assert abs(info.parameters - real) / real < 0.02  # the Llama-like formula vs the real module


def _fake_cache(cache, repo_id: str, source) -> None:
    """Lay out ``source`` as a hub cache entry (refs/main -> snapshot), the way huggingface_hub stores it."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    blobs = repo / "blobs"
    blobs.mkdir()
    snapshot.mkdir(parents=True)
    for i, file in enumerate(sorted(source.iterdir())):
        blob = blobs / f"{i:040d}"
        shutil.copyfile(file, blob)
        (snapshot / file.name).symlink_to(blob)


def test_hub_id_resolves_from_the_cache_offline_and_is_listed(tiny_pair, tmp_path):
    cache = tmp_path / "hf-cache"
    _fake_cache(cache, "tiny-org/tiny-teacher", tiny_pair[0])
    save_settings(AppSettings(hf_cache_dir=str(cache)))
    folder = M.resolve_model("tiny-org/tiny-teacher")
    assert (folder / "config.json").is_file() and folder.parent.name == "snapshots"
    info = M.inspect_model("tiny-org/tiny-teacher")
    assert info.layers == 4 and not info.is_local and info.parameters_exact
    listed = M.list_cached_models()
    assert [m.repo_id for m in listed] == ["tiny-org/tiny-teacher"] and listed[0].has_weights


def test_offline_and_not_cached_is_a_clear_model_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    save_settings(AppSettings(hf_cache_dir=str(tmp_path / "empty-cache")))
    with pytest.raises(ModelError) as info:
        M.inspect_model("no-such-org/no-such-model")
    assert "not in the local Hugging Face cache" in info.value.message and "HF_HUB_OFFLINE" in info.value.message
    assert info.value.exit_code == 2


@pytest.mark.parametrize("ref, words", [("./does/not/exist", "folder not found"),
                                        ("bad id with spaces", "neither an existing folder nor a hub id")])
def test_bad_references(ref, words):
    with pytest.raises(ModelError, match=words):
        M.resolve_model(ref, role="teacher")


def test_folder_without_config_is_rejected_with_a_hint_for_gguf(tmp_path):
    (tmp_path / "model.gguf").write_bytes(b"GGUF")
    with pytest.raises(ModelError, match="no config.json.*GGUF"):
        M.resolve_model(str(tmp_path))


# ---- tokenizer check ---------------------------------------------------------------------------


def test_same_tokenizer_is_compatible(tiny_pair):
    verdict = M.check_tokenizer_pair(str(tiny_pair[0]), str(tiny_pair[1]))
    assert verdict.compatible and verdict.shared_vocab == 512 and "same tokenizer" in verdict.message


def test_padded_embedding_matrix_is_compatible_with_the_real_vocabulary(tiny_pair):
    tok = M.load_tokenizer(tiny_pair[0])
    verdict = M.check_tokenizer_pair("teacher-x", "student-y", teacher_tokenizer=tok, student_tokenizer=tok,
                                     teacher_rows=640, student_rows=520)
    assert verdict.compatible and verdict.shared_vocab == 512
    assert "restricted to the 512 real tokens and renormalised" in verdict.message


def test_embedding_smaller_than_the_tokenizer_is_rejected(tiny_pair):
    tok = M.load_tokenizer(tiny_pair[0])
    verdict = M.check_tokenizer_pair("t", "s", teacher_tokenizer=tok, student_tokenizer=tok,
                                     teacher_rows=500, student_rows=512)
    assert not verdict.compatible and "fewer than the tokenizer's 512" in verdict.message


def test_different_tokenizers_are_rejected_naming_both_and_the_way_out(tiny_pair, tiny_llama_pair):
    verdict = M.check_tokenizer_pair(str(tiny_pair[0]), str(tiny_llama_pair[1]))
    assert not verdict.compatible
    assert str(tiny_pair[0]) in verdict.message and str(tiny_llama_pair[1]) in verdict.message
    assert "black-box" in verdict.message


# ---- deriving a student ------------------------------------------------------------------------


def test_derived_student_holds_the_chosen_teacher_layers(tiny_pair, tmp_path):
    from transformers import AutoModelForCausalLM

    out = M.derive_student(str(tiny_pair[0]), [1, 3], tmp_path / "student")
    teacher, student = load_weights(tiny_pair[0]), load_weights(out)
    assert AutoModelForCausalLM.from_pretrained(str(out)).config.num_hidden_layers == 2
    for new, old in ((0, 1), (1, 3)):
        for key in [k for k in teacher if k.startswith(f"model.layers.{old}.")]:
            assert torch.equal(student[key.replace(f"layers.{old}.", f"layers.{new}.")], teacher[key]), key
    for key in ("model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"):
        assert torch.equal(student[key], teacher[key])
    assert not any(k.startswith("model.layers.2.") for k in student)
    config = json.loads((out / "tokenizer_config.json").read_text())
    assert "chat_template" in config  # Ollama reads the template only there


def test_a_student_with_every_layer_computes_exactly_the_teacher(tiny_pair, tmp_path):
    from transformers import AutoModelForCausalLM

    out = M.derive_student(str(tiny_pair[0]), [0, 1, 2, 3], tmp_path / "all")
    ids = torch.tensor([[5, 17, 33, 2, 90, 41]])
    with torch.no_grad():
        a = AutoModelForCausalLM.from_pretrained(str(tiny_pair[0]))(input_ids=ids).logits
        b = AutoModelForCausalLM.from_pretrained(str(out))(input_ids=ids).logits
    assert torch.equal(a, b)


def test_empty_keep_layers_keeps_every_other_layer_and_bad_indices_fail(tiny_pair, tmp_path):
    out = M.derive_student(str(tiny_pair[0]), [], tmp_path / "half")
    assert json.loads((out / "derived_from.json").read_text())["keep_layers"] == [0, 2]
    with pytest.raises(ModelError, match=r"layer\(s\) \[7\] do not exist.*4 layers"):
        M.derive_student(str(tiny_pair[0]), [0, 7], tmp_path / "bad")
    with pytest.raises(ModelError, match="increasing order"):
        M.derive_student(str(tiny_pair[0]), [2, 0], tmp_path / "bad")


# ---- devices and bitsandbytes (the GPU paths cannot run here: their errors can) -----------------


def test_quantized_teacher_off_cuda_is_a_config_error(tiny_pair):
    with pytest.raises(ConfigError, match="load_in = '8bit'.*NVIDIA GPU") as info:
        M.load_model(tiny_pair[0], dtype="float32", device="cpu", load_in="8bit", role="teacher")
    assert info.value.exit_code == 2


def test_8bit_adamw_off_cuda_is_a_config_error():
    from distill_gui.config import TrainConfig
    from distill_gui.engine.optim import build_optimizer

    with pytest.raises(ConfigError, match="adamw_8bit.*NVIDIA GPU"):
        build_optimizer(torch.nn.Linear(2, 2), TrainConfig(optimizer="adamw_8bit"), "cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_asking_for_cuda_without_a_gpu_is_a_config_error():
    from distill_gui.engine.device import choose, resolve_device

    with pytest.raises(ConfigError, match="sees no CUDA GPU"):
        resolve_device("cuda")
    with pytest.raises(ConfigError, match="fp16' needs a GPU"):
        choose("cpu", "fp16")
    assert resolve_device("auto") in ("cpu", "mps")
    assert choose("cpu").precision == "fp32" and choose("cpu").teacher_dtype == "float32"


def test_derived_student_keeps_the_teachers_published_dtype(tiny_pair, tmp_path):
    from transformers import AutoModelForCausalLM

    bf16 = tmp_path / "bf16-teacher"
    AutoModelForCausalLM.from_pretrained(str(tiny_pair[0]), dtype=torch.bfloat16).save_pretrained(str(bf16))
    shutil.copy(tiny_pair[0] / "tokenizer.json", bf16)
    shutil.copy(tiny_pair[0] / "tokenizer_config.json", bf16)
    out = M.derive_student(str(bf16), [0, 3], tmp_path / "student")
    assert {t.dtype for t in load_weights(out).values()} == {torch.bfloat16}
    assert M.published_dtype(out) == "bfloat16"


def test_an_ollama_reference_is_not_a_hugging_face_model():
    with pytest.raises(ModelError, match="is an Ollama model"):
        M.inspect_model("ollama:llama3.2")


def test_download_progress_becomes_phase_events():
    """snapshot_download drives a tqdm class over bytes; ours turns it into PhaseProgress events, silently."""
    from distill_gui.events import PhaseProgress

    events = []
    bar = loading._progress_class(events.append, "org/model")(total=1000, initial=0, unit="B", unit_scale=True,
                                                         desc="Downloading bytes")
    bar.update(400)
    bar.update(600)
    bar.close()
    assert events and all(isinstance(e, PhaseProgress) and e.phase == "download" for e in events)
    assert (events[-1].done, events[-1].total, events[-1].unit) == (1000.0, 1000.0, "B")
    assert "org/model" in events[-1].message
