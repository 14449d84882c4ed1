"""Ollama models offered as teachers on the Models page; the answer phase shown on the Train page."""

from __future__ import annotations

import json

from PySide6.QtCore import Qt

from distill_gui.events import Finished, PhaseProgress

from .conftest import small_run_values, wait_until


def test_models_page_lists_ollama_models_and_uses_one_as_the_teacher(window, qtbot, ollama_server, monkeypatch):
    monkeypatch.setenv("OLLAMA_HOST", ollama_server.url)
    ollama_server.add_model("qwen-teacher:7b", parameter_size="7.6B", quantization_level="Q4_K_M")
    ollama_server.add_model("embedder", capabilities=["embedding"])
    page = window.models_page
    window.show_page("Models")
    page.ollama.refresh()
    wait_until(qtbot, lambda: page.ollama.models.count() == 1, what="the Ollama model list")
    item = page.ollama.models.item(0)
    assert item.data(Qt.ItemDataRole.UserRole) == "qwen-teacher:7b" and "7.6B" in item.text()
    page.ollama.models.setCurrentItem(item)
    qtbot.mouseClick(page.ollama.use_button, Qt.MouseButton.LeftButton)
    assert window.store.get("teacher.model") == "ollama:qwen-teacher:7b"
    assert page.teacher.status.text() == "Ollama teacher" and "Ollama" in page.teacher.values["Architecture"].text()
    assert page.pair.badge.text() == "black-box teacher"
    assert page.ollama.use_button.text() == "Teacher ✓"
    assert page.ollama.fields["teacher.gen_num_ctx"].editor.isEnabled()
    assert not page.cache.fields["teacher.cache_top_k"].editor.isEnabled()  # the cache is for HF teachers
    ollama_server.close()  # the server goes away: the list says so instead of failing
    page.ollama.refresh()
    wait_until(qtbot, lambda: page.ollama.status.text() == "Ollama not reachable", what="the unreachable badge")


def test_train_page_shows_the_answer_phase_before_training(window, qtbot, ollama_server, monkeypatch, tiny_pair,
                                                           tmp_path):
    monkeypatch.setenv("OLLAMA_HOST", ollama_server.url)
    ollama_server.add_model("teacher", reply="It is a small number.", token_delay=0.01)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"What is {i} plus {i}?"}) + "\n" for i in range(12)))
    values = small_run_values(*tiny_pair, prompts, "ollama-run", steps=2)
    values.update({"teacher.model": "ollama:teacher", "distill.loss": "ce"})
    window.store.set_many(values)
    window.show_page("Train")
    page = window.train_page
    formats: list[str] = []
    page.progress.valueChanged.connect(lambda _v: formats.append(page.progress.format()))
    assert page.start()
    events: list = []
    page.worker.event.connect(events.append)
    wait_until(qtbot, lambda: any(isinstance(e, Finished) for e in events), what="the run to finish")
    assert any(f.startswith("generate:") and f.endswith("answers") for f in formats)
    assert "the teacher answered 12 of 12 prompts" in page.log.text()
    answers = [e for e in events if isinstance(e, PhaseProgress) and e.phase == "generate"]
    assert answers and answers[-1].done == answers[-1].total == 12
