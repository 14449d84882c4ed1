"""The Export page on real run folders and the Ollama test server: sizes, name suggestion and
validation, the Modelfile (generated, edited, reset), Export with progress, Register with verification,
and failures shown as what went wrong."""

from __future__ import annotations

import gguf
import pytest
from PySide6.QtCore import Qt

from distill_gui.chatlog import newest_registered
from distill_gui.config import default_runs_dir
from distill_gui.export import default_model_name, estimate_gguf_size
from distill_gui.formatting import human_bytes
from distill_gui.gui.pages.export_page import ExportPage
from distill_gui.settings import AppSettings, save_settings

from .conftest import copy_run, wait_until


@pytest.fixture
def page(qtbot, ollama_server):
    save_settings(AppSettings(ollama_host=ollama_server.url))
    export_page = ExportPage()
    qtbot.addWidget(export_page)
    export_page.resize(1200, 800)
    yield export_page
    export_page.shutdown()


def show(qtbot, page: ExportPage) -> None:
    page.show()
    qtbot.waitExposed(page)


def wait_ready(qtbot, page: ExportPage) -> None:
    wait_until(qtbot, lambda: page.source is not None and page.modelfile.toPlainText()
               and not page.runner.busy("modelfile") and not page.runner.busy("inspect"), 20, "the source")


def wait_done(qtbot, page: ExportPage) -> None:
    wait_until(qtbot, lambda: not page._busy() and page.result.isVisible(), 30, "the export / registration")


def test_export_then_register_a_run(qtbot, page, engine_runs, ollama_server):
    run = copy_run(engine_runs["finished-run"], default_runs_dir())
    ollama_server.add_model("finished-run:v1")                  # an earlier version is installed
    show(qtbot, page)
    wait_ready(qtbot, page)
    assert page.checkpoint_combo.currentText() == "final"
    assert page.name() == "finished-run:v2"                     # the run's name with the next version tag
    f16_index = page.type_combo.findData("f16")
    estimate = estimate_gguf_size(run / "final", "f16")
    assert page.type_combo.currentIndex() == f16_index and human_bytes(estimate) in page.type_combo.currentText()
    assert all(human_bytes(estimate_gguf_size(run / "final", t)) in page.type_combo.itemText(i)
               for i, t in enumerate(("f32", "f16", "bf16", "q8_0")))
    assert "FROM ./finished-run-v2.gguf" in page.modelfile.toPlainText()
    assert "TEMPLATE" in page.modelfile.toPlainText() and 'PARAMETER stop "' in page.modelfile.toPlainText()

    page.system_edit.setPlainText("You are a distilled assistant.")      # settings regenerate the Modelfile
    wait_until(qtbot, lambda: 'SYSTEM """You are a distilled assistant."""' in page.modelfile.toPlainText(), 10,
               "the regenerated Modelfile")
    page.quantize_combo.setCurrentIndex(page.quantize_combo.findData("q4_K_M"))
    events = []
    page._progress = lambda event, record=page._progress: (events.append(event), record(event))
    qtbot.mouseClick(page.export_button, Qt.MouseButton.LeftButton)
    assert page.progress.isVisible() and not page.export_button.isEnabled() and page.cancel_button.isEnabled()
    wait_done(qtbot, page)

    out = run / "export"
    gguf_path = out / "finished-run-v2.gguf"
    assert gguf_path.is_file() and "Exported" in page.result_text.text()
    assert abs(gguf_path.stat().st_size - estimate) / estimate < 0.05      # the size shown was close
    reader = gguf.GGUFReader(gguf_path)
    name_field = reader.fields["general.name"]
    assert bytes(name_field.parts[name_field.data[0]]).decode() == "finished-run:v2"
    assert (out / "Modelfile").read_text() == page.modelfile.toPlainText()
    export_events = [e for e in events if e.phase == "export"]
    assert export_events and export_events[-1].done == export_events[-1].total > 0

    registered = []
    page.registered.connect(registered.append)
    qtbot.mouseClick(page.register_button, Qt.MouseButton.LeftButton)
    wait_done(qtbot, page)
    assert registered == ["finished-run:v2"], page.result_text.text()
    text = page.result_text.text()
    assert "Registered finished-run:v2" in text and "template read back as sent" in text
    assert "stopped by itself" in text and "Stored as Q4_K_M" in text and page.chat_button.isVisible()
    create = ollama_server.requests_to("/api/create")[0].body
    assert create["system"] == "You are a distilled assistant." and create["quantize"] == "q4_K_M"
    assert len(ollama_server.requests_to("/api/blobs/", "POST")) == 1      # the exported file, not a new one
    assert [e.phase for e in events if e.phase.startswith("register")][-1] == "register-probe"
    assert newest_registered(["finished-run:v2", "finished-run:v1"]) == "finished-run:v2"


def test_edited_modelfile_is_registered_and_reset_restores_it(qtbot, page, tiny_pair, ollama_server, tmp_path):
    show(qtbot, page)
    page.select_folder(tiny_pair[1])
    wait_ready(qtbot, page)
    generated = page.modelfile.toPlainText()
    assert not page.reset_button.isEnabled()
    page.out_dir.set_text(str(tmp_path / "out"))
    page.modelfile.setPlainText(generated + "PARAMETER temprature 0.3\n")        # a typo
    assert page.reset_button.isEnabled() and "Edited by you" in page.modelfile_state.text()
    qtbot.mouseClick(page.register_button, Qt.MouseButton.LeftButton)
    wait_done(qtbot, page)
    assert "unknown parameter 'temprature'" in page.result_text.text() and not page.chat_button.isVisible()
    assert ollama_server.requests_to("/api/create") == [] and not (tmp_path / "out").exists()

    page.modelfile.setPlainText(generated + "PARAMETER temperature 0.3\n")
    page.name_edit.setText("student:edited")                   # the Modelfile stays as edited
    assert page.modelfile.toPlainText().endswith("PARAMETER temperature 0.3\n")
    qtbot.mouseClick(page.register_button, Qt.MouseButton.LeftButton)      # exports first, then registers
    wait_done(qtbot, page)
    assert "Registered student:edited" in page.result_text.text(), page.result_text.text()
    assert ollama_server.requests_to("/api/create")[0].body["parameters"]["temperature"] == 0.3
    on_disk = (tmp_path / "out" / "Modelfile").read_text()
    assert "FROM ./student-edited.gguf" in on_disk and "PARAMETER temperature 0.3" in on_disk

    qtbot.mouseClick(page.reset_button, Qt.MouseButton.LeftButton)
    wait_until(qtbot, lambda: "temperature 0.3" not in page.modelfile.toPlainText()
               and not page.runner.busy("modelfile"), 10, "the reset")
    base = default_model_name(tiny_pair[1])
    assert page.modelfile.toPlainText() == generated.replace(f"{base}-v1", "student-edited")
    assert not page.reset_button.isEnabled()


def test_name_and_quantize_rules(qtbot, page, tiny_pair):
    show(qtbot, page)
    page.select_folder(tiny_pair[1])
    wait_ready(qtbot, page)
    assert page.name() == f"{default_model_name(tiny_pair[1])}:v1"
    page.name_edit.setText("bad name!")
    assert "not a valid Ollama model name" in page.name_problem.text()
    assert not page.export_button.isEnabled() and not page.register_button.isEnabled()
    page.name_edit.setText("me/student:q8")
    assert page.name_problem.text() == "" and page.export_button.isEnabled()
    f16 = estimate_gguf_size(tiny_pair[1], "f16")
    page.quantize_combo.setCurrentIndex(page.quantize_combo.findData("q8_0"))
    assert f"≈ {human_bytes(int(f16 * 8.5 / 16))} in Ollama" in page.quantize_combo.currentText()
    page.type_combo.setCurrentIndex(page.type_combo.findData("q8_0"))      # Ollama cannot quantize a q8_0 file
    assert not page.quantize_combo.isEnabled() and page.quantize() is None


def test_register_failures_say_what_went_wrong(qtbot, page, tiny_pair, ollama_server, tmp_path):
    show(qtbot, page)
    page.select_folder(tiny_pair[1])
    wait_ready(qtbot, page)
    page.out_dir.set_text(str(tmp_path / "out"))
    ollama_server.created_model_defaults = {"endless": True}   # registers, but never stops by itself
    qtbot.mouseClick(page.register_button, Qt.MouseButton.LeftButton)
    wait_done(qtbot, page)
    assert "is registered in Ollama, but its probe chat did not stop by itself" in page.result_text.text()
    assert page.details_button.isVisible() and not page.chat_button.isVisible()

    url = ollama_server.url
    ollama_server.close()
    qtbot.mouseClick(page.register_button, Qt.MouseButton.LeftButton)
    wait_done(qtbot, page)
    assert f"Ollama is not running at {url}" in page.result_text.text()
    assert (tmp_path / "out" / f"{default_model_name(tiny_pair[1])}-v1.gguf").is_file()   # the exported files are kept


def test_a_registered_student_goes_to_the_chat_page(qtbot, window, ollama_server):
    save_settings(AppSettings(ollama_host=ollama_server.url))
    ollama_server.add_model("teacher:7b")
    ollama_server.add_model("other:1b")
    ollama_server.add_model("fresh-student:v3")
    window.export_page.registered.emit("fresh-student:v3")     # what a verified registration signals
    chat = window.chat_page
    wait_until(qtbot, lambda: chat.models_loaded and not chat.runner.busy("models"), 10, "the chat model list")
    assert chat.panes["B"].model() == "fresh-student:v3"
    window.export_page.chat_requested.emit("fresh-student:v3")
    assert window.current_page_name() == "Chat"
