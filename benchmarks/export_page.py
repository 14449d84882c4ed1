"""The Export page's export against the same export called directly: time, and GUI stalls meanwhile.

Builds a student of a few hundred MB (tiny architecture, wide layers) and writes it as GGUF twice per
round: ``direct`` calls ``export_tasks.export_files`` on this thread; ``page`` presses Export on the
real page (worker thread, progress signals) while a 5 ms timer measures the longest event-loop stall.
Target: the page within 1.1x of direct, its longest stall under 100 ms.

Run: ``python benchmarks/export_page.py [--hidden 1024] [--layers 8] [--type q8_0] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ["DISTILL_GUI_HOME"] = tempfile.mkdtemp(prefix="dg-bench-export-")

from PySide6.QtWidgets import QApplication  # noqa: E402

from benchmarks.chat_page import StallMeter  # noqa: E402
from distill_gui.gui import export_tasks  # noqa: E402
from distill_gui.gui.pages.export_page import ExportPage  # noqa: E402
from distill_gui.workflows.tiny import build_tiny_pair  # noqa: E402


def spin(app: QApplication, condition) -> None:
    while not condition():
        app.processEvents()
        time.sleep(0.001)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--type", default="q8_0")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    app = QApplication([])
    work = Path(tempfile.mkdtemp(prefix="dg-bench-export-model-"))
    try:
        _, student = build_tiny_pair(work / "models", teacher_layers=2, student_layers=args.layers,
                                     hidden=args.hidden)
        size = sum(p.stat().st_size for p in student.glob("*.safetensors"))
        page = ExportPage()
        page.resize(1200, 800)
        page.show()
        page.select_folder(student)
        spin(app, lambda: page.source is not None and page.modelfile.toPlainText() and
             not page.runner.busy("modelfile"))
        page.type_combo.setCurrentIndex(page.type_combo.findData(args.type))
        page.name_edit.setText("bench:v1")
        spin(app, lambda: not page.runner.busy("modelfile"))
        text = page.modelfile.toPlainText()
        direct, through_page, stalls = [], [], []
        for round_ in range(args.repeats):
            out = work / f"direct-{round_}"
            started = time.perf_counter()
            export_tasks.export_files(student, out, gguf_type=args.type, name="bench:v1", modelfile_text=text)
            direct.append(time.perf_counter() - started)
            shutil.rmtree(out)
            out = work / f"page-{round_}"
            page.out_dir.set_text(str(out))
            meter = StallMeter()
            meter.start()
            started = time.perf_counter()
            page.export()
            spin(app, lambda: not page._busy())
            through_page.append(time.perf_counter() - started)
            stalls.append(meter.stop())
            assert (out / "bench-v1.gguf").is_file(), page.result_text.text()
            shutil.rmtree(out)
        page.shutdown()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base = statistics.median(direct)
    print(f"student: {size / 1e6:.0f} MB of safetensors -> {args.type}; median of {args.repeats}\n")
    print("| variant | seconds | x direct | longest GUI stall ms |")
    print("|---|---|---|---|")
    print(f"| direct | {base:.2f} | 1.00 | – |")
    print(f"| page | {statistics.median(through_page):.2f} | {statistics.median(through_page) / base:.2f} | "
          f"{statistics.median(stalls):.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
