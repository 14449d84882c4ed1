"""RunConfig: TOML round trip, overrides, and errors that name the file, line and key."""

from __future__ import annotations

import sys

import pytest

from distill_gui.config import RunConfig, apply_override, load_config
from distill_gui.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

MINIMAL = """\
name = "r1"

[teacher]
model = "some/teacher"

[student]
model = "some/student"

[data]
train = "train.jsonl"
"""


def write(tmp_path, text, name="run.toml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_match_design_and_only_models_and_train_are_required(tmp_path):
    cfg = load_config(write(tmp_path, MINIMAL))
    assert cfg.distill.loss == "forward_kl" and cfg.distill.temperature == 2.0 and cfg.distill.alpha == 0.9
    assert cfg.train.max_steps == 1000 and cfg.train.batch_size == 4 and cfg.train.grad_accum == 4
    assert cfg.train.scheduler == "cosine" and cfg.export.type == "f16" and cfg.data.loss_on == "response"


def test_toml_round_trip_is_lossless(tmp_path):
    cfg = load_config(write(tmp_path, MINIMAL), ["distill.temperature=1.5", "student.keep_layers=[0, 3]",
                                                  "export.system=\"Say \\\"hi\\\"\\nthen go\""])
    again = load_config(cfg.save(tmp_path / "again.toml"))
    assert again.to_dict() == cfg.to_dict()
    assert tomllib.loads(cfg.to_toml())["student"]["keep_layers"] == [0, 3]
    assert again.export.system == 'Say "hi"\nthen go'


def test_unknown_key_names_file_line_and_key(tmp_path):
    path = write(tmp_path, MINIMAL + "\n[train]\nmax_step = 10\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msg = info.value.message
    assert str(path) in msg and "line 13" in msg and "max_step" in msg and "max_steps" in msg
    assert info.value.exit_code == 2


def test_wrong_type_and_range_and_choice(tmp_path):
    for extra, needle in [("[train]\nbatch_size = \"four\"\n", "whole number"),
                          ("[distill]\nalpha = 1.5\n", "<= 1.0"),
                          ("[distill]\nloss = \"kl\"\n", "one of"),
                          ("[distill]\ntemperature = 0\n", "> 0.0")]:
        with pytest.raises(ConfigError, match=needle):
            load_config(write(tmp_path, MINIMAL + extra))


def test_override_types_and_errors():
    cfg = RunConfig()
    apply_override(cfg, "train.max_steps=7")
    apply_override(cfg, "teacher.model=Qwen/Qwen2.5-0.5B")  # not TOML -> taken as a string
    apply_override(cfg, "train.lr=1")                        # int accepted for a float
    assert cfg.train.max_steps == 7 and cfg.teacher.model == "Qwen/Qwen2.5-0.5B" and cfg.train.lr == 1.0
    for bad in ["train.max_steps", "nosuch.key=1", "train.nosuch=1", "train.max_steps=1.5"]:
        with pytest.raises(ConfigError):
            apply_override(cfg, bad)


def test_invalid_toml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(write(tmp_path, "name = \n"))
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")


def test_relative_paths_resolve_against_the_config_folder(tmp_path, monkeypatch):
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "train.jsonl").write_text("{}\n")
    (tmp_path / "cfg" / "teacher").mkdir()
    monkeypatch.chdir(tmp_path)
    cfg = load_config(write(tmp_path / "cfg", MINIMAL.replace("some/teacher", "teacher")))
    assert cfg.data.train == str((tmp_path / "cfg" / "train.jsonl").resolve())
    assert cfg.teacher.model == str((tmp_path / "cfg" / "teacher").resolve())
    assert cfg.student.model == "some/student"  # a hub id stays a hub id


def test_cross_field_checks(tmp_path):
    derived = load_config(write(tmp_path, MINIMAL.replace('"some/student"', '"teacher"')))
    assert derived.student.keep_layers == []  # empty = every other teacher layer (engine.models.derive_student)
    with pytest.raises(ConfigError, match="keep_layers"):
        load_config(write(tmp_path, MINIMAL.replace('"some/student"', '"teacher"')), ["student.keep_layers=[-1]"])
    with pytest.raises(ConfigError, match="teacher"):
        load_config(write(tmp_path, MINIMAL.replace('model = "some/teacher"', "")))
