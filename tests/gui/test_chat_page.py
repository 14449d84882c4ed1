"""The Chat page against the loopback Ollama test server: two panes streaming at once, live stats,
one pane failing while the other completes, Retry, Stop, blind votes with tallies and the reveal,
saving and reopening."""

from __future__ import annotations

import json

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication, QTextFormat

from distill_gui.chatlog import load_tallies, pair_key, read_votes, remember_registered, votes_path
from distill_gui.gui.config_store import ConfigStore
from distill_gui.gui.pages.chat_page import ChatPage
from distill_gui.gui.widgets.chat_view import stable_boundary
from distill_gui.settings import AppSettings, save_settings

from .conftest import wait_until

TEACHER_REPLY = ("Recursion is a function calling **itself** on a smaller input.\n\n```python\ndef fact(n):\n"
                 "    return 1 if n < 2 else n * fact(n - 1)\n```\n\nEach call waits for the next one to return.")
STUDENT_REPLY = "A function that calls itself until a base case stops it, like fact(n) = n * fact(n - 1)."


def open_page(qtbot, server, store: ConfigStore | None = None) -> ChatPage:
    """A Chat page talking to ``server`` (through settings.json, as the app does), with its models listed."""
    save_settings(AppSettings(ollama_host=server.url))
    page = ChatPage(store)
    qtbot.addWidget(page)
    page.resize(1200, 760)
    page.show()
    qtbot.waitExposed(page)
    wait_until(qtbot, lambda: page.models_loaded and not page.runner.busy("models"), 10, "the model list")
    return page


def send(qtbot, page: ChatPage, text: str) -> None:
    page.input.setPlainText(text)
    qtbot.keyClick(page.input, Qt.Key.Key_Return)


def both_finished(page: ChatPage) -> bool:
    return bool(page.conversation.turns) and not page.is_streaming() and all(
        reply.finished for reply in page.conversation.turns[-1].replies.values())


def chat_bodies(server) -> list[dict]:
    return [r.body for r in server.requests_to("/api/chat")]


@pytest.fixture
def shutdown_pages():
    pages: list[ChatPage] = []
    yield pages.append
    for page in pages:
        page.shutdown()


def test_both_panes_stream_at_once_with_live_stats_markdown_and_copy(qtbot, ollama_server, shutdown_pages):
    ollama_server.add_model("teacher:7b", reply=TEACHER_REPLY, token_delay=0.02, size=4_700_000_000)
    ollama_server.add_model("student:v1", reply=STUDENT_REPLY, token_delay=0.02, size=400_000_000)
    ollama_server.add_model("unrelated:1b")                     # the newest model, yet no default
    remember_registered("student:v1")
    store = ConfigStore()
    store.set("teacher.model", "ollama:teacher:7b")
    page = open_page(qtbot, ollama_server, store)
    shutdown_pages(page)
    a, b = page.panes["A"], page.panes["B"]
    assert (a.model(), b.model()) == ("teacher:7b", "student:v1")   # the Ollama teacher, the registered student
    assert "4.38 GiB · Q4_K_M · 1.2B" in a.picker.currentText() and "trained context 4096" in a.info.text()
    page.shared_settings.system.setText("Answer briefly.")

    send(qtbot, page, "What is recursion?")

    def both_streaming_with_live_stats() -> bool:
        return (a.is_streaming() and b.is_streaming() and a.reply.content != "" and b.reply.content != ""
                and all(p.stats.text().startswith("Streaming… TTFT") for p in (a, b)))

    wait_until(qtbot, both_streaming_with_live_stats, 10, "both replies streaming at once, with live stats")
    partial = a.reply.content
    assert TEACHER_REPLY.startswith(partial) and len(partial) < len(TEACHER_REPLY)
    wait_until(qtbot, lambda: both_finished(page), 15, "both replies")

    teacher_stream, student_stream = sorted(ollama_server.streams[:2], key=lambda s: s.model != "teacher:7b")
    assert teacher_stream.started < student_stream.ended and student_stream.started < teacher_stream.ended
    turn = page.conversation.turns[0]
    assert turn.replies["A"].content == TEACHER_REPLY and turn.replies["B"].content == STUDENT_REPLY
    for pane, record in (("A", teacher_stream), ("B", student_stream)):
        stats = turn.replies[pane].stats
        assert stats["eval_count"] == record.final["eval_count"]
        assert stats["tokens_per_s"] == pytest.approx(record.final["eval_count"] / record.final["eval_duration"] * 1e9)
        assert stats["done_reason"] == "stop" and 0 < stats["ttft_s"] < stats["total_s"]
    wait_until(qtbot, lambda: "in memory" in a.stats.text() and "in memory" in b.stats.text(), 5, "memory from ps")
    streamed_b = b.view.plain_text()
    assert "4.38 GiB in memory (100 % GPU)" in a.stats.text()
    assert f"{teacher_stream.final['eval_count']} tokens" in a.stats.text() and "tok/s" in a.stats.text()

    for body in chat_bodies(ollama_server):    # the same shared settings and conversation to both
        assert body["messages"] == [{"role": "system", "content": "Answer briefly."},
                                    {"role": "user", "content": "What is recursion?"}]
        assert body["options"] == {"temperature": 0.7, "num_ctx": 4096, "num_predict": 1024}

    text = a.view.plain_text()                 # markdown rendered: no ** or fences, the code is a code block
    page._render_all()                         # drawn piece by piece while streaming = drawn whole
    assert a.view.plain_text() == text and b.view.plain_text() == streamed_b
    assert "itself on a smaller input" in text and "**" not in text and "```" not in text
    code_blocks = []
    block = a.view.document().begin()
    while block.isValid():
        if block.blockFormat().hasProperty(QTextFormat.Property.BlockCodeFence):
            code_blocks.append(block.text())
            assert block.blockFormat().background().style() != Qt.BrushStyle.NoBrush
        block = block.next()
    assert code_blocks[0] == "def fact(n):"
    a.view.copy_link("reply:0")
    assert QGuiApplication.clipboard().text() == TEACHER_REPLY

    # The second turn carries each pane's own history; per-pane settings reach only their pane.
    page.shared.setChecked(False)
    b.settings.temperature.setValue(0.1)
    b.settings.seed.setValue(7)
    send(qtbot, page, "Shorter, please.")
    wait_until(qtbot, lambda: both_finished(page), 15, "the second replies")
    second = {body["model"]: body for body in chat_bodies(ollama_server)[2:]}
    assert second["student:v1"]["options"] == {"temperature": 0.1, "num_ctx": 4096, "seed": 7, "num_predict": 1024}
    assert second["teacher:7b"]["options"] == {"temperature": 0.7, "num_ctx": 4096, "num_predict": 1024}
    assert [m["content"] for m in second["student:v1"]["messages"][1:]] == [
        "What is recursion?", STUDENT_REPLY, "Shorter, please."]


def test_a_pane_failing_mid_stream_leaves_the_other_complete_and_retry_recovers(qtbot, ollama_server,
                                                                               shutdown_pages):
    ollama_server.add_model("flaky:1b", reply="one two three four five six", fail_after=3, token_delay=0.01)
    ollama_server.add_model("steady:1b", reply=STUDENT_REPLY, token_delay=0.02)
    page = open_page(qtbot, ollama_server)
    shutdown_pages(page)
    a, b = page.panes["A"], page.panes["B"]
    a.select_model("flaky:1b")
    b.select_model("steady:1b")
    send(qtbot, page, "Count to six.")
    wait_until(qtbot, lambda: a.reply.state == "error", 10, "the failing pane")
    assert b.is_streaming()                     # the other pane is still going when the first one fails
    wait_until(qtbot, lambda: both_finished(page), 10, "the other pane")

    assert a.banner.isVisible() and a.banner_title.text() == "The reply broke off"
    assert "llama runner process has terminated" in a.banner_text.text() and a.retry.isVisible()
    assert a.reply.content == "one two three"   # what arrived before the error stays, marked as failed
    assert "Failed:" in a.view.plain_text()
    assert b.reply.state == "done" and b.reply.content == STUDENT_REPLY and not b.banner.isVisible()

    ollama_server.add_model("flaky:1b", reply="one two three four five six")   # the server recovers
    qtbot.mouseClick(a.retry, Qt.MouseButton.LeftButton)
    wait_until(qtbot, lambda: both_finished(page), 10, "the retried pane")
    assert a.reply.state == "done" and a.reply.content == "one two three four five six"
    assert not a.banner.isVisible() and b.reply.content == STUDENT_REPLY
    bodies = chat_bodies(ollama_server)
    assert [body["model"] for body in bodies].count("steady:1b") == 1      # Retry re-asked only that pane
    assert bodies[-1]["messages"] == [{"role": "user", "content": "Count to six."}]


def test_missing_model_and_ollama_down_show_banners(qtbot, ollama_server, shutdown_pages):
    ollama_server.add_model("gone:1b")
    ollama_server.add_model("here:1b", reply="Still here.")
    page = open_page(qtbot, ollama_server)
    shutdown_pages(page)
    a, b = page.panes["A"], page.panes["B"]
    a.select_model("gone:1b")
    b.select_model("here:1b")
    ollama_server.remove_model("gone:1b")       # deleted after the list was read
    send(qtbot, page, "Hello?")
    wait_until(qtbot, lambda: both_finished(page), 10, "both panes")
    assert a.banner_title.text() == "Model not found" and "ollama pull gone:1b" in a.banner_text.text()
    assert b.reply.content == "Still here." and not b.banner.isVisible()

    url = ollama_server.url
    ollama_server.close()                       # Ollama stops: the model list cannot be read
    page.refresh_models()
    wait_until(qtbot, lambda: not page.runner.busy("models"), 10, "the failed model list")
    for pane in (a, b):
        assert pane.banner.isVisible() and pane.banner_title.text() == "Ollama is not reachable"
        assert url in pane.banner_text.text() and "ollama serve" in pane.banner_text.text()


def test_stop_cancels_both_replies_on_the_server(qtbot, ollama_server, shutdown_pages):
    ollama_server.add_model("rambler-a", endless=True, token_delay=0.02)
    ollama_server.add_model("rambler-b", endless=True, token_delay=0.02)
    page = open_page(qtbot, ollama_server)
    shutdown_pages(page)
    a, b = page.panes["A"], page.panes["B"]
    a.select_model("rambler-a")
    b.select_model("rambler-b")
    send(qtbot, page, "Go on forever.")
    wait_until(qtbot, lambda: a.reply.content and b.reply.content, 10, "both replies")
    qtbot.mouseClick(page.stop_button, Qt.MouseButton.LeftButton)
    assert a.reply.state == b.reply.state == "stopped" and not page.is_streaming()
    frozen = (a.reply.content, b.reply.content)
    wait_until(qtbot, lambda: len(ollama_server.streams) == 2 and all(s.cancelled for s in ollama_server.streams),
               5, "the server to see both streams cancelled")
    assert all(s.sent_tokens < s.planned_tokens for s in ollama_server.streams)
    qtbot.wait(100)
    assert (a.reply.content, b.reply.content) == frozen and "Stopped." in a.view.plain_text()
    assert page.send_button.isEnabled() and page.regenerate_button.isEnabled()


def test_blind_votes_are_recorded_revealed_and_tallied(qtbot, ollama_server, shutdown_pages):
    ollama_server.add_model("teacher:7b", reply="Gravity pulls masses towards each other.")
    ollama_server.add_model("student:v1", reply="Mass attracts mass.")
    page = open_page(qtbot, ollama_server)
    shutdown_pages(page)
    a, b = page.panes["A"], page.panes["B"]
    a.select_model("teacher:7b")
    b.select_model("student:v1")
    page.blind.setChecked(True)
    seated = dict(page.conversation.models)
    assert sorted(seated.values()) == ["student:v1", "teacher:7b"]
    assert (a.title.text(), b.title.text()) == ("Left", "Right")
    assert not a.picker.isVisible() and a.hidden_note.isVisible()
    assert not page.vote_bar.buttons["left"].isEnabled()       # nothing to judge yet

    send(qtbot, page, "Explain gravity.")
    wait_until(qtbot, lambda: both_finished(page), 10, "both blind replies")
    for pane in (a, b):                        # who is who stays hidden until the vote
        shown = pane.view.plain_text() + pane.stats.text() + pane.info.text()
        assert "teacher" not in shown and "student" not in shown
    assert page.vote_bar.buttons["left"].isEnabled()
    qtbot.mouseClick(page.vote_bar.buttons["left"], Qt.MouseButton.LeftButton)

    votes = list(read_votes())
    assert [(v.left, v.right, v.vote, v.prompt) for v in votes] == [(seated["A"], seated["B"], "left",
                                                                     "Explain gravity.")]
    assert json.loads(votes_path().read_text().splitlines()[0])["vote"] == "left"
    assert f"Left · {seated['A']}" in a.view.plain_text() and f"Right · {seated['B']}" in b.view.plain_text()
    assert f"Left was <b>{seated['A']}</b>" in page.vote_bar.result.text()
    assert "TTFT" in a.stats.text()                                   # stats come back with the reveal
    assert f"{seated['A']} won 1, {seated['B']} won 0" in page.vote_bar.tally.text().replace(
        f"{seated['B']} won 0, {seated['A']} won 1", f"{seated['A']} won 1, {seated['B']} won 0")
    qtbot.mouseClick(page.vote_bar.buttons["left"], Qt.MouseButton.LeftButton)     # hidden now: no second vote
    assert len(list(read_votes())) == 1

    qtbot.mouseClick(page.vote_bar.next_round, Qt.MouseButton.LeftButton)
    assert page.conversation.turns == [] and not page.conversation.blind["revealed"]
    assert not a.picker.isVisible()
    send(qtbot, page, "Explain tides.")
    wait_until(qtbot, lambda: both_finished(page), 10, "the second round")
    qtbot.mouseClick(page.vote_bar.buttons["tie"], Qt.MouseButton.LeftButton)
    pair = load_tallies()[pair_key("teacher:7b", "student:v1")]
    assert (pair.wins(seated["A"]), pair.wins(seated["B"]), pair.ties, pair.total) == (1, 0, 1, 2)
    assert "of 1 decisive vote" in page.vote_bar.tally.text()
    second_seating = dict(page.conversation.models)
    page.blind.setChecked(False)               # leaving blind mode: the pickers show who sat where
    assert a.picker.isVisible() and (a.model(), b.model()) == (second_seating["A"], second_seating["B"])
    assert not page.vote_bar.isVisible() and a.title.text() == "A"
    page.blind.setChecked(True)

    orders = set()                             # the seating is random, round after round
    for _ in range(30):
        page._seat_blind()
        orders.add(page.conversation.models["A"])
    assert orders == {"teacher:7b", "student:v1"}


def test_save_as_jsonl_and_markdown_then_reopen(qtbot, ollama_server, shutdown_pages, tmp_path):
    ollama_server.add_model("teacher:7b", reply=TEACHER_REPLY)
    ollama_server.add_model("student:v1", reply=STUDENT_REPLY)
    page = open_page(qtbot, ollama_server)
    shutdown_pages(page)
    page.panes["A"].select_model("teacher:7b")
    page.panes["B"].select_model("student:v1")
    send(qtbot, page, "What is recursion?")
    wait_until(qtbot, lambda: both_finished(page), 10, "both replies")
    first = page.conversation.turns[0].replies["A"]
    qtbot.mouseClick(page.regenerate_button, Qt.MouseButton.LeftButton)   # both asked again, same history
    wait_until(qtbot, lambda: both_finished(page), 10, "the regenerated replies")
    bodies = chat_bodies(ollama_server)
    assert len(bodies) == 4 and len(page.conversation.turns) == 1
    assert sorted((b["model"], str(b["messages"])) for b in bodies[2:]) == sorted(
        (b["model"], str(b["messages"])) for b in bodies[:2])
    assert page.conversation.turns[0].replies["A"] is not first
    assert page.panes["A"].view.plain_text().count("itself on a smaller input") == 1
    assert page.save_to(tmp_path / "chat.jsonl") and page.save_to(tmp_path / "chat.md")
    markdown = (tmp_path / "chat.md").read_text(encoding="utf-8")
    assert "## 1. You\n\nWhat is recursion?" in markdown and TEACHER_REPLY in markdown and STUDENT_REPLY in markdown
    assert "### A · teacher:7b" in markdown and "### B · student:v1" in markdown

    page.clear()
    assert page.panes["A"].view.plain_text() == ""
    page.panes["A"].select_model("student:v1")
    assert page.open_file(tmp_path / "chat.jsonl")
    reopened = page.conversation.turns[0]
    assert reopened.user == "What is recursion?" and reopened.replies["A"].content == TEACHER_REPLY
    assert reopened.replies["B"].stats["eval_count"] > 0
    assert page.panes["A"].model() == "teacher:7b"                  # the pickers follow the file
    assert "itself on a smaller input" in page.panes["A"].view.plain_text()
    send(qtbot, page, "And iteration?")                              # the reopened chat continues
    wait_until(qtbot, lambda: both_finished(page), 10, "the continued chat")
    assert chat_bodies(ollama_server)[-1]["messages"][1]["content"] in (TEACHER_REPLY, STUDENT_REPLY)


def test_streamed_markdown_is_final_up_to_the_last_blank_line_outside_code():
    text = "Intro.\n\n```python\na = 1\n\nb = 2\n```\n\nMore text"
    first = stable_boundary(text, 0)
    assert text[:first] == "Intro.\n\n```python\na = 1\n\nb = 2\n```\n\n"    # not inside the fence
    assert stable_boundary(text, first) == first
    assert stable_boundary("Intro.\n\n```python\na = 1\n\nb", 0) == len("Intro.\n\n")   # fence still open
    assert stable_boundary("one line", 0) == 0


def test_thinking_models_answer_directly_unless_allowed_to_think(qtbot, ollama_server, shutdown_pages):
    ollama_server.add_model("thinker:8b", thinking="Blue light scatters more.", reply="Rayleigh scattering.")
    ollama_server.add_model("plain:1b", reply="Because of scattering.")
    page = open_page(qtbot, ollama_server)
    shutdown_pages(page)
    a, b = page.panes["A"], page.panes["B"]
    a.select_model("thinker:8b")
    b.select_model("plain:1b")
    send(qtbot, page, "Why is the sky blue?")
    wait_until(qtbot, lambda: both_finished(page), 10, "both replies")
    think = {body["model"]: body.get("think") for body in chat_bodies(ollama_server)}
    assert think == {"thinker:8b": False, "plain:1b": None}     # never think: true to a model that cannot
    assert a.reply.thinking == "" and a.reply.content == "Rayleigh scattering."

    page.think.setChecked(True)
    qtbot.mouseClick(page.regenerate_button, Qt.MouseButton.LeftButton)
    wait_until(qtbot, lambda: both_finished(page), 10, "the thinking reply")
    assert {b["model"]: b.get("think") for b in chat_bodies(ollama_server)[-2:]} == {"thinker:8b": True,
                                                                                     "plain:1b": None}
    assert a.reply.thinking == "Blue light scatters more." and b.reply.state == "done"
    assert "Thinking: Blue light scatters more." in a.view.plain_text()
