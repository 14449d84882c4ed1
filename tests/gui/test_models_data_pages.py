"""Models page (pickers, sizes, tokenizer verdict, memory plan) and Data page (preview) on tiny models."""

from __future__ import annotations

import html
import json
import re

from distill_gui.formatting import human_count

from .conftest import wait_until, write_chat_rows


def _param_count(folder) -> int:
    from transformers import AutoModelForCausalLM

    return sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(str(folder)).parameters())


def _badge(label) -> tuple[str, str]:
    return label.property("badge"), label.text()


def test_checking_local_models_shows_their_facts_verdict_and_memory_plan(window, qtbot, tiny_pair):
    from transformers import AutoTokenizer

    teacher_dir, student_dir = tiny_pair
    page = window.models_page
    window.store.set_many({"teacher.model": str(teacher_dir), "student.model": str(student_dir),
                           "train.device": "cpu"})   # local folders are checked at once
    wait_until(qtbot, lambda: page.teacher.info is not None and page.student.info is not None, what="both checks")
    assert page.teacher.values["Parameters"].text() == human_count(_param_count(teacher_dir))
    assert page.student.values["Parameters"].text() == human_count(_param_count(student_dir))
    assert page.teacher.values["Layers"].text().startswith("4 × hidden 64")
    assert page.student.values["Layers"].text().startswith("2 × hidden 64")
    vocab = len(AutoTokenizer.from_pretrained(str(teacher_dir)))
    assert page.teacher.values["Vocabulary"].text() == f"{vocab:,} tokens"
    assert page.teacher.values["Chat template"].text() == "yes"
    assert page.teacher.values["Architecture"].text() == "Qwen2ForCausalLM (qwen2)"
    assert "smaller" in page.pair.sizes.text()

    wait_until(qtbot, lambda: page.verdict is not None, what="the tokenizer verdict")
    assert _badge(page.pair.badge) == ("ok", "same tokenizer")
    wait_until(qtbot, lambda: page.memory.plan is not None, what="the memory plan")
    plan = page.memory.plan
    assert plan.device == "cpu" and plan.fits
    assert _badge(page.memory.badge) == ("ok", "fits")
    assert "teacher weights" in page.memory.items.text() and "optimizer state" in page.memory.items.text()

    page.memory.form.editor("train.batch_size").setValue(8)       # re-plans for the new batch
    wait_until(qtbot, lambda: page.memory.plan is not plan, what="a new plan")
    assert page.memory.plan.get("activations") > plan.get("activations")


def test_tokenizers_from_another_family_are_flagged(window, qtbot, tiny_pair, tiny_llama_pair):
    page = window.models_page
    window.store.set_many({"teacher.model": str(tiny_llama_pair[0]), "student.model": str(tiny_pair[1])})
    wait_until(qtbot, lambda: page.verdict is not None, what="the tokenizer verdict")
    assert not page.verdict.compatible
    assert _badge(page.pair.badge) == ("error", "tokenizers differ")
    assert "different tokenizers" in page.pair.verdict.text()


def test_a_missing_folder_says_so_in_the_picker(window, qtbot, tmp_path):
    page = window.models_page
    page.teacher.ref.setEditText(str(tmp_path / "nowhere"))
    page.teacher._ref_edited()
    page.teacher.check_now()
    wait_until(qtbot, lambda: page.teacher.status.property("badge") == "error", what="the error badge")
    assert "not found" in page.teacher.notes.text() and "nowhere" in page.teacher.notes.text()


def test_deriving_the_student_from_teacher_layers(window, qtbot, tiny_pair, tmp_path):
    from distill_gui.engine.models import derive_student

    page = window.models_page
    window.store.set("teacher.model", str(tiny_pair[0]))
    wait_until(qtbot, lambda: page.teacher.info is not None, what="the teacher check")
    page.student.derive.setChecked(True)
    assert window.store.config.student.model == "teacher"
    assert page.student.layers.layer_count() == 4 and not page.student.ref.isEnabled()
    page.student.layers.select_stride(2)
    assert window.store.config.student.keep_layers == [0, 2, 3]
    shown = page.student.values["Parameters"].text()
    derived = derive_student(str(tiny_pair[0]), [0, 2, 3], tmp_path / "derived")
    actual = _param_count(derived)
    assert shown == f"≈ {human_count(actual)} (estimated)"
    assert abs(page.student.info.parameters - actual) / actual < 0.01
    wait_until(qtbot, lambda: page.verdict is not None, what="the tokenizer verdict")
    assert page.verdict.compatible
    page.student.derive.setChecked(False)
    assert window.store.config.student.model == "" and window.store.config.student.keep_layers == []


def test_data_preview_shows_rendered_rows_masking_lengths_and_problems(window, qtbot, tiny_pair, tmp_path):
    from transformers import AutoTokenizer

    data = write_chat_rows(tmp_path / "chat.jsonl", 30, bad_line_after=5)     # line 6 is broken
    with open(data, "a", encoding="utf-8") as f:
        f.write(json.dumps({"messages": [{"role": "user", "content": "Hi there"},
                                         {"role": "assistant", "content": "Hello, friend."}]}) + "\n")
    page = window.data_page
    window.show_page("Data")
    window.store.set_many({"student.model": str(tiny_pair[1]), "data.train": str(data), "data.max_length": 64})
    wait_until(qtbot, lambda: page.preview is not None, what="the preview")
    preview = page.preview
    assert preview.row_count == 31
    assert "31 rows" in page.summary.text() and "1 problem" in page.summary.text()
    assert page.problems.rowCount() == 1 and page.problems.item(0, 0).text() == "6"
    assert "JSON" in page.problems.item(0, 1).text()
    assert page.badge.property("badge") == "error"

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_pair[1]))
    first = tokenizer.apply_chat_template([{"role": "user", "content": "What is 0 plus 1?"},
                                           {"role": "assistant", "content": "It is 1."}], tokenize=False)
    shown = page.rows_view.toPlainText()
    assert first.strip() in shown                           # the row exactly as the chat template renders it
    body = page.rows_view.toHtml()
    masked = re.findall(r'<span style="[^"]*background-color:[^"]*">(.*?)</span>', body, flags=re.S)
    masked_text = html.unescape("".join(masked))
    assert "What is 0 plus 1?" in masked_text                # the prompt is shown as masked
    assert "It is 1." not in masked_text                     # the answer is trained
    assert sum(page.histogram.counts) == preview.row_count
    assert page.histogram.edges[-1] >= max(preview.token_lengths)

    window.store.set("data.max_length", 24)                  # shorter than the rows: re-previewed
    wait_until(qtbot, lambda: page.preview is not preview and page.preview is not None, what="a new preview")
    assert "truncated" in page.summary.text()
    assert max(page.preview.token_lengths) <= 24


def test_data_preview_of_a_missing_file_explains(window, qtbot, tiny_pair, tmp_path):
    page = window.data_page
    window.store.set_many({"student.model": str(tiny_pair[1]), "data.train": str(tmp_path / "none.jsonl")})
    wait_until(qtbot, lambda: page.badge.property("badge") == "error", what="the error badge")
    assert "none.jsonl" in page.summary.text()
    assert page.preview is None and page.problems.rowCount() == 0
