"""The Chat page streaming two long replies at once: delivery speed and GUI stalls, side by side.

Both panes stream the same long markdown reply (paragraphs and code) from the loopback test server,
run in its own process as Ollama is: by default with no delay between tokens (a flood far faster than
any model, where the two workers' per-token Python work competes with the GUI for the GIL), or with
``--token-delay 0.005`` (~200 tokens/s per pane, a small student on a GPU). Three variants, one run:

- ``bare``: two threads iterating ``OllamaClient.chat`` to the end, no GUI (the floor);
- ``page``: the real ChatPage (a worker per pane; pieces buffered by the worker, one queued signal
  per batch; markdown redrawn at 10 Hz by the page's timer);
- ``redraw-on-arrival``: the same page redrawing the pane whenever a batch arrives (what the 10 Hz
  timer avoids).

For each: wall time until both replies are complete, tokens per second per pane, and the longest
stall of the GUI event loop (a 5 ms timer's worst lateness) while streaming. Target: the page within
1.5x of bare, its longest stall under 100 ms.

Run: ``python benchmarks/chat_page.py [--tokens 1500] [--repeats 3] [--token-delay 0.005]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ["DISTILL_GUI_HOME"] = tempfile.mkdtemp(prefix="dg-bench-chat-")

from PySide6.QtCore import QElapsedTimer, Qt, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from distill_gui.gui.pages.chat_page import ChatPage  # noqa: E402
from distill_gui.gui.widgets.chat_pane import ChatPane  # noqa: E402
from distill_gui.ollama import ChatStats, OllamaClient  # noqa: E402
from distill_gui.settings import AppSettings, save_settings  # noqa: E402

PARAGRAPH = ("Distillation trains a small **student** to match the output distribution of a larger teacher, "
             "token by token, at a temperature that softens both. ")
CODE = "```python\nloss = alpha * kl(student / T, teacher / T) * T**2 + (1 - alpha) * ce\n```\n\n"


def long_reply(tokens: int) -> str:
    parts, words = [], 0
    while words < tokens:
        block = PARAGRAPH * 3 + "\n\n" + CODE
        parts.append(block)
        words += len(block.split())
    return "".join(parts)


class StallMeter:
    """Worst lateness of a 5 ms timer on the GUI thread."""

    def __init__(self) -> None:
        self.clock = QElapsedTimer()
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(5)
        self.timer.timeout.connect(self._tick)
        self.worst_ms = 0.0
        self._last = 0

    def start(self) -> None:
        self.clock.start()
        self._last = self.clock.nsecsElapsed()
        self.timer.start()

    def _tick(self) -> None:
        now = self.clock.nsecsElapsed()
        self.worst_ms = max(self.worst_ms, (now - self._last) / 1e6 - 5)
        self._last = now

    def stop(self) -> float:
        self.timer.stop()
        return self.worst_ms


def run_bare(url: str) -> tuple[float, list[int]]:
    counts = [0, 0]

    def pump(side: int, model: str) -> None:
        with OllamaClient(url) as client:
            for item in client.chat(model, [{"role": "user", "content": "Explain."}]):
                if not isinstance(item, ChatStats):
                    counts[side] += 1

    started = time.perf_counter()
    threads = [threading.Thread(target=pump, args=(i, m)) for i, m in enumerate(("bench-a", "bench-b"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, counts


def run_page(app: QApplication, page: ChatPage) -> tuple[float, list[int], float]:
    page.clear()
    page.input.setPlainText("Explain.")
    meter = StallMeter()
    meter.start()
    started = time.perf_counter()
    page.send()
    while page.is_streaming():
        app.processEvents()
        time.sleep(0.001)
    wall = time.perf_counter() - started
    worst = meter.stop()
    counts = [page.panes[p].reply.stats.get("eval_count", 0) for p in ("A", "B")]
    return wall, counts, worst


SERVER_CODE = """
import sys, time
sys.path.insert(0, {root!r})
from benchmarks.chat_page import long_reply
from tests.ollama_server import OllamaTestServer
server = OllamaTestServer()
for name in ("bench-a", "bench-b"):
    server.add_model(name, reply=long_reply({tokens}), token_delay={delay})
print(server.url, flush=True)
sys.stdin.read()          # serve until the benchmark closes our stdin
server.close()
"""


def start_server(tokens: int, delay: float) -> tuple[subprocess.Popen, str]:
    """The test server in its own process, as Ollama is: its threads must not compete for our GIL."""
    code = SERVER_CODE.format(root=str(ROOT), tokens=tokens, delay=delay)
    process = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    return process, process.stdout.readline().strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=1500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--token-delay", type=float, default=0.0,
                        help="seconds between tokens (0: as fast as possible; 0.005: ~200 tokens/s per pane)")
    args = parser.parse_args()
    app = QApplication([])
    server_process, url = start_server(args.tokens, args.token_delay)
    save_settings(AppSettings(ollama_host=url))
    page = ChatPage()
    page.resize(1300, 800)
    page.show()
    while not page.models_loaded:
        app.processEvents()
        time.sleep(0.01)
    page.panes["A"].select_model("bench-a")
    page.panes["B"].select_model("bench-b")
    page.shared_settings.num_predict.setValue(-1)

    results: dict[str, list[tuple[float, list[int], float]]] = {"bare": [], "page": [], "redraw-on-arrival": []}
    original = ChatPane._on_arrived

    def redraw_on_arrival(self):  # the naive page: redraw whenever text arrives
        original(self)
        self.tick()

    for _ in range(args.repeats):
        wall, counts = run_bare(url)
        results["bare"].append((wall, counts, 0.0))
        ChatPane._on_arrived = original
        results["page"].append(run_page(app, page))
        ChatPane._on_arrived = redraw_on_arrival
        results["redraw-on-arrival"].append(run_page(app, page))
        ChatPane._on_arrived = original
    page.shutdown()
    server_process.stdin.close()
    server_process.wait(10)

    bare_wall = statistics.median(r[0] for r in results["bare"])
    tokens = results["bare"][0][1][0]
    pace = f"{args.token_delay * 1000:g} ms between tokens" if args.token_delay else "no delay between tokens"
    print(f"two panes, {tokens} tokens each, median of {args.repeats} (test server in its own process, {pace})\n")
    print("| variant | wall s | tokens/s per pane | x bare | longest GUI stall ms |")
    print("|---|---|---|---|---|")
    for name, rows in results.items():
        wall = statistics.median(r[0] for r in rows)
        stall = "–" if name == "bare" else f"{statistics.median(r[2] for r in rows):.0f}"
        print(f"| {name} | {wall:.2f} | {tokens / wall:.0f} | {wall / bare_wall:.2f} | {stall} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
