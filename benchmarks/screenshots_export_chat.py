"""README screenshots of the Export page (after a verified registration), the Chat page mid-stream,
and blind mode, against the loopback Ollama test server (no real Ollama needed).

``benchmarks/screenshots.py`` calls :func:`shoot_export_and_chat` with its window; run alone it builds
a tiny model, trains a short run and takes only these three:

    python benchmarks/screenshots_export_chat.py [--out docs/screenshots] [--size 1440x900] [--dark]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

WARMUP = "Hi! Who are you, in one sentence?"
QUESTION = "Why is the sky blue? Answer briefly."
TEACHER_REPLY = (
    "Sunlight is a mix of all colours. On its way through the air it hits molecules much smaller than its "
    "wavelength, and that **Rayleigh scattering** grows steeply as the wavelength shrinks (about 1/λ⁴):\n\n"
    "```python\nratio = (700 / 450) ** 4   # red vs. blue wavelength, nm\nprint(round(ratio, 1))     # 5.9\n```\n\n"
    "So blue light is scattered almost six times more than red, and it reaches your eyes from every part of "
    "the sky. At sunset the light crosses much more air, the blue is scattered away, and reds remain.")
STUDENT_REPLY = (
    "Air molecules scatter short wavelengths much more than long ones (**Rayleigh scattering**), so blue light "
    "is spread across the whole sky while red passes straight through. That is also why sunsets look red.")
BLIND_QUESTION = "Give me one tip for writing clear commit messages."
BLIND_A = ("Write the subject line as an **imperative summary** under ~50 characters (\"Fix crash when the "
           "config is empty\"), then explain *why* in the body, not what the diff already shows.")
BLIND_B = "Keep the first line short and say what the change does, e.g. `Add retry to upload`."


def reply_for(answers: dict[str, str], default: str):
    """A test-server reply function: the answer to the last user message."""
    def reply(messages: Any) -> str:
        last = next((m.get("content", "") for m in reversed(messages or []) if m.get("role") == "user"), "")
        return answers.get(last, default)
    return reply


def shoot_export_and_chat(shots: Any, run_dir: Path) -> None:
    """Export + register ``run_dir`` through the Export page, then chat with teacher and student.

    ``shots`` is benchmarks/screenshots.py's Shooter (``window``, ``spin``, ``wait``, ``shoot``).
    """
    from distill_gui.chatlog import Vote, record_vote
    from distill_gui.settings import load_settings, save_settings
    from tests.ollama_server import OllamaTestServer

    win = shots.window
    server = OllamaTestServer()
    settings = load_settings()
    settings.ollama_host = server.url
    save_settings(settings)
    teacher = "qwen2.5:1.5b-instruct"
    server.add_model(teacher, reply=reply_for({QUESTION: TEACHER_REPLY, BLIND_QUESTION: BLIND_A,
                                               WARMUP: "I'm Qwen, a large language model created by Alibaba Cloud."},
                                              TEACHER_REPLY),
                     token_delay=0.07, size=1_230_000_000, parameter_size="1.5B", family="qwen2",
                     context_length=32768)
    server.created_model_defaults = {
        "reply": reply_for({QUESTION: STUDENT_REPLY, BLIND_QUESTION: BLIND_B,
                            WARMUP: "I'm a small assistant distilled from Qwen, here to help."}, STUDENT_REPLY),
        "token_delay": 0.03, "parameter_size": "494M", "family": "qwen2", "size": 398_000_000}
    student = f"{run_dir.name}:v1"
    try:
        page = win.export_page
        win.show_page("Export")
        page.select_run(run_dir)
        shots.wait(lambda: page.source is not None and page.modelfile.toPlainText() and
                   not page.runner.busy("modelfile"), "the Export page to read the run")
        page.system_edit.setPlainText("You are a concise, friendly assistant.")
        page.quantize_combo.setCurrentIndex(page.quantize_combo.findData("q4_K_M"))
        shots.wait(lambda: "SYSTEM" in page.modelfile.toPlainText() and not page.runner.busy("modelfile"),
                   "the Modelfile with the system prompt")
        page.register()
        shots.wait(lambda: not page._busy() and page.result.isVisible(), "the registration")
        shots.shoot("Export", "export")

        # A few earlier blind votes, so the tally line has something to say.
        for vote in ("right", "left", "right", "tie", "right"):
            record_vote(Vote(teacher, student, vote, prompt="earlier round"))
        chat = win.chat_page
        win.show_page("Chat")
        shots.wait(lambda: chat.models_loaded and not chat.runner.busy("models"), "the chat model list")
        chat.panes["A"].select_model(teacher)
        chat.panes["B"].select_model(student)
        chat.input.setPlainText(WARMUP)
        chat.send()
        shots.wait(lambda: not chat.is_streaming(), "the first replies")
        chat.input.setPlainText(QUESTION)
        chat.send()
        shots.wait(lambda: chat.panes["B"].reply.state == "done" and len(chat.panes["A"].reply.content) > 200,
                   "the student done, the teacher mid-stream")
        shots.shoot("Chat", "chat", settle=0.15)
        shots.wait(lambda: not chat.is_streaming(), "the teacher's reply")

        chat.blind.setChecked(True)
        chat.input.setPlainText(BLIND_QUESTION)
        chat.send()
        shots.wait(lambda: not chat.is_streaming() and chat._both_answered(), "both blind replies")
        shots.shoot("Chat", "chat-blind", settle=0.3)
        chat.blind.setChecked(False)
    finally:
        server.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    parser.add_argument("--size", default="1440x900")
    parser.add_argument("--dark", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dg-shots-"))
    os.environ["DISTILL_GUI_HOME"] = str(work / "home")
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        from benchmarks.screenshots import Shooter

        run_dir = _short_run(work)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        shots = Shooter(out, tuple(int(v) for v in args.size.split("x")))
        if args.dark:
            from distill_gui.gui import theme

            theme.apply_theme(shots.app, "dark")
        shoot_export_and_chat(shots, run_dir)
        shots.window.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _short_run(work: Path) -> Path:
    """A finished 12-step run of a tiny pair in the private runs folder (what the Export page lists)."""
    from distill_gui.config import RunConfig, default_runs_dir
    from distill_gui.engine.trainer import train
    from distill_gui.workflows.tiny import build_tiny_pair, sample_text

    teacher, student = build_tiny_pair(work / "models", texts=sample_text(600))
    data = work / "data.txt"
    data.write_text("\n".join(sample_text(200, seed=1)), encoding="utf-8")
    cfg = RunConfig()
    for key, value in {"name": "qwen05-from-15", "teacher.model": str(teacher), "student.model": str(student),
                       "data.train": str(data), "data.max_length": 48, "train.max_steps": 12, "train.batch_size": 2,
                       "train.grad_accum": 1, "train.log_every": 2, "train.eval_every": 6, "train.save_every": 6,
                       "train.device": "cpu"}.items():
        cfg.set(key, value)
    cfg.output_dir = str(default_runs_dir())
    started = time.monotonic()
    train(cfg)
    print(f"trained a tiny run in {time.monotonic() - started:.1f} s")
    return default_runs_dir() / "qwen05-from-15"


if __name__ == "__main__":
    sys.exit(main())
