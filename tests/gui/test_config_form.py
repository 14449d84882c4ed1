"""The Train page's form is bound to RunConfig: tooltips, editors, validation, presets, TOML files."""

from __future__ import annotations

from dataclasses import fields

from PySide6.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QLineEdit, QSpinBox

from distill_gui.config import SECTIONS, TOP_LEVEL, load_config
from distill_gui.gui.pages.train_page import SECTIONS as FORM_SECTIONS
from distill_gui.gui.presets import PRESETS

from .conftest import error_dialogs


def _field(key):
    section, _, name = key.rpartition(".")
    return next(f for f in fields(SECTIONS[section]) if f.name == name) if section else None


def test_every_editor_has_the_config_help_as_tooltip_and_fits_its_field(window):
    page = window.train_page
    keys = [key for _, section_keys in FORM_SECTIONS for key in section_keys]
    assert len(keys) == len(set(keys)) >= 30
    for key in keys:
        editor = page._editor(key)
        f = _field(key)
        expected_help = TOP_LEVEL[key] if f is None else f.metadata["help"]
        assert editor.toolTip() == expected_help, key
        if f is None:
            continue
        choices = f.metadata.get("choices")
        if f.type == "bool":
            assert isinstance(editor, QCheckBox), key
        elif choices:
            assert isinstance(editor, QComboBox)
            assert [editor.itemData(i) for i in range(editor.count())] == list(choices), key
        elif f.type == "int":
            assert isinstance(editor, QSpinBox), key
            assert editor.minimum() == f.metadata.get("min", editor.minimum()), key
        elif f.type == "float":
            assert isinstance(editor, (QDoubleSpinBox, QLineEdit)), key
    lr = page._editor("train.lr")
    assert lr.text() == "5e-05"                                   # scientific notation survives


def test_edits_reach_the_config_and_every_page_showing_the_same_key(window):
    batch_on_train_page = window.train_page._editor("train.batch_size")
    batch_on_models_page = window.models_page.memory.form.editor("train.batch_size")
    batch_on_train_page.setValue(7)
    assert window.store.config.train.batch_size == 7
    assert batch_on_models_page.value() == 7
    loss = window.train_page._editor("distill.loss")
    loss.setCurrentIndex(loss.findData("jsd"))
    assert window.store.config.distill.loss == "jsd"
    assert window.train_page._editor("distill.beta").isEnabled()
    assert not window.train_page._editor("distill.skew").isEnabled()
    loss.setCurrentIndex(loss.findData("ce"))
    assert not window.train_page._editor("distill.temperature").isEnabled()


def test_a_value_the_config_rejects_is_marked_and_not_taken(window):
    lr = window.train_page._editor("train.lr")
    lr.setText("-0.001")
    lr.editingFinished.emit()
    assert window.store.config.train.lr == 5e-5
    assert lr.property("invalid") is True
    assert "must be > 0.0" in lr.toolTip()
    lr.setText("0.0003")
    lr.editingFinished.emit()
    assert window.store.config.train.lr == 3e-4 and lr.property("invalid") is False
    window.store.set_many({"teacher.model": "org/teacher", "student.model": "org/student", "data.train": "d.jsonl"})
    name = window.train_page._editor("name")
    name.setText("bad/name")
    name.editingFinished.emit()
    assert window.store.config.name == "bad/name"     # a single value is fine; validate() rejects it at Start
    assert not window.train_page.start()
    assert "cannot be a folder name" in error_dialogs()[0].text()


def test_presets_set_their_values_and_are_recognised(window):
    page = window.train_page
    for preset in PRESETS:
        page.preset.setCurrentText(preset.name)
        page.preset.activated.emit(page.preset.currentIndex())
        for key, value in preset.values.items():
            assert window.store.get(key) == value, (preset.name, key)
        assert page.preset.currentText() == preset.name
        assert page.preset.itemData(page.preset.currentIndex(), 3) == preset.description   # ToolTipRole
    page._editor("train.seed").setValue(7)             # not a preset key: still this preset
    assert page.preset.currentText() == PRESETS[-1].name
    page._editor("train.batch_size").setValue(3)
    assert page.preset.currentText() == "Custom"


def test_saved_toml_is_what_the_cli_loads_and_loads_back_into_the_form(window, tiny_pair, train_jsonl,
                                                                        tmp_path):
    store = window.store
    store.set_many({"name": "from-gui", "teacher.model": str(tiny_pair[0]), "student.model": str(tiny_pair[1]),
                    "data.train": str(train_jsonl), "train.lr": 2.5e-4, "distill.loss": "skew_reverse_kl",
                    "student.lora_rank": 8, "train.gradient_checkpointing": True})
    path = tmp_path / "cfg" / "run.toml"
    assert window.train_page.save_config_file(path)
    from_cli = load_config(path)                       # the loader `distill-gui train` uses
    assert from_cli.to_dict() == store.config.to_dict()

    store.set_many({"name": "changed", "train.lr": 1e-3})
    assert window.train_page.load_config_file(path)
    assert store.config.to_dict() == from_cli.to_dict()
    assert window.train_page._editor("name").text() == "from-gui"
    assert window.train_page._editor("train.lr").text() == "0.00025"
    assert window.train_page._editor("train.gradient_checkpointing").isChecked()


def test_a_bad_toml_file_names_file_line_and_key_and_changes_nothing(window, tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('name = "x"\n\n[train]\nmax_step = 10\n', encoding="utf-8")
    before = window.store.config.to_dict()
    assert not window.train_page.load_config_file(path)
    text = error_dialogs()[0].text()
    assert str(path) in text and "line 4" in text and "max_step" in text
    assert window.store.config.to_dict() == before
