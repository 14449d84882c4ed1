"""`distill-gui compare`: both answers streamed at once, the table, partial failure and exit codes."""

from __future__ import annotations

import io
import re
import socket

from distill_gui.cli import main
from distill_gui.commands.compare import LiveBlocks
from distill_gui.ollama.compare import CompareEvent
from distill_gui.ollama.types import ChatChunk

TEACHER_REPLY = "The capital of France is Paris, a city on the Seine."
STUDENT_REPLY = "Paris."


def _compare(server, *extra):
    return main(["compare", "teacher:7b", "student", "--prompt", "Capital of France?",
                 "--ollama-host", server.url, *extra])


def _side_text(output: str, label: str) -> str:
    return "".join(line[len(label) + 3:] for line in output.splitlines() if line.startswith(f"{label} │ "))


def _table_row(output: str, label: str) -> list[str]:
    (row,) = [line for line in output.splitlines() if re.match(rf"{label}\s{{2,}}\S", line)]
    return re.split(r"\s{2,}", row)


def test_both_answers_stream_then_a_table(ollama_server, capsys):
    ollama_server.add_model("teacher:7b", reply=TEACHER_REPLY, size=5_600_000_000, size_vram=5_600_000_000)
    ollama_server.add_model("student", reply=STUDENT_REPLY, size=600_000_000, size_vram=0)

    code = _compare(ollama_server)

    output = capsys.readouterr().out
    assert code == 0
    assert "A: teacher:7b" in output and "B: student" in output
    assert _side_text(output, "A") == TEACHER_REPLY and _side_text(output, "B") == STUDENT_REPLY
    teacher, student = _table_row(output, "A"), _table_row(output, "B")
    finals = {s.model: s.final for s in ollama_server.streams}
    assert teacher[1] == "teacher:7b" and teacher[4] == str(finals["teacher:7b"]["eval_count"]) == "11"
    assert student[1:2] == ["student"] and student[4] == str(finals["student:latest"]["eval_count"]) == "1"
    assert teacher[6] == "5.22 GiB (100% GPU)" and student[6] == "572 MiB (100% CPU)"   # 5.6e9 and 0.6e9 bytes
    assert teacher[-1] == student[-1] == "stop"
    assert re.fullmatch(r"\d+\.\d\d s", teacher[2]) and re.fullmatch(r"\d+\.\d", teacher[3])


def test_the_two_models_are_asked_at_the_same_time(ollama_server, capsys):
    words = " ".join(f"w{i}" for i in range(15))
    ollama_server.add_model("teacher:7b", reply=words, token_delay=0.01)
    ollama_server.add_model("student", reply=words, token_delay=0.01)

    assert _compare(ollama_server) == 0

    first, second = ollama_server.streams
    assert first.started < second.ended and second.started < first.ended  # the two replies overlapped
    chats = ollama_server.requests_to("/api/chat")
    assert sorted(r.body["model"] for r in chats) == ["student", "teacher:7b"]


def test_one_side_failing_leaves_the_other_complete(ollama_server, capsys):
    ollama_server.add_model("teacher:7b", reply=TEACHER_REPLY)
    ollama_server.add_model("student", reply="one two three four", fail_after=2,
                            fail_message="llama runner process has terminated: signal: killed")

    code = _compare(ollama_server)

    output = capsys.readouterr().out
    assert code == 1
    assert _side_text(output, "A") == TEACHER_REPLY and _table_row(output, "A")[-1] == "stop"
    assert _table_row(output, "B")[-1] == "failed"
    assert "B (student) failed: Ollama reported an error" in output and "signal: killed" in output


def test_a_missing_model_is_exit_code_2_and_the_other_still_answers(ollama_server, capsys):
    ollama_server.add_model("teacher:7b", reply=TEACHER_REPLY)
    code = _compare(ollama_server)
    output = capsys.readouterr().out
    assert code == 2
    assert _side_text(output, "A") == TEACHER_REPLY
    assert "B (student) failed: Model 'student' is not installed" in output


def test_no_server_is_one_clear_message(capsys):
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        dead_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    code = main(["compare", "a", "b", "--prompt", "hi", "--ollama-host", dead_url])
    captured = capsys.readouterr()
    assert code == 1
    assert captured.err.startswith(f"error: Ollama is not running at {dead_url}")
    assert "Traceback" not in captured.err and captured.out == ""


def test_system_prompt_reaches_both_models(ollama_server, capsys):
    ollama_server.add_model("teacher:7b")
    ollama_server.add_model("student")
    assert _compare(ollama_server, "--system", "Answer in one word.") == 0
    for request in ollama_server.requests_to("/api/chat"):
        assert request.body["messages"] == [{"role": "system", "content": "Answer in one word."},
                                            {"role": "user", "content": "Capital of France?"}]


def test_thinking_is_marked_in_the_labelled_output(ollama_server, capsys):
    ollama_server.add_model("teacher:7b", thinking="Recall geography.", reply="Paris.")
    ollama_server.add_model("student", reply="Paris.")
    assert _compare(ollama_server) == 0
    a_lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("A │ ")]
    assert a_lines == ["A │ [thinking]", "A │ Recall geography.", "A │ [answer]", "A │ Paris."]


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_live_blocks_end_with_both_answers_in_full():
    out = _Terminal()
    blocks = LiveBlocks(out, ["teacher", "student"])
    long_answer = " ".join(f"word{i}" for i in range(400))
    for piece in long_answer.split(" "):
        blocks.handle(CompareEvent(0, "teacher", chunk=ChatChunk(content=piece + " ")))
    blocks.handle(CompareEvent(1, "student", chunk=ChatChunk(content="Paris.")))
    blocks.close()

    final = out.getvalue().rsplit("\x1b[J", 1)[-1]  # what stays on screen after the last redraw
    lines = final.splitlines()
    assert lines[0].startswith("── A: teacher") and any(line.startswith("── B: student") for line in lines)
    teacher_text = " ".join(line.strip() for line in lines[1:lines.index("")])
    assert teacher_text == long_answer
    assert "  Paris." in lines
