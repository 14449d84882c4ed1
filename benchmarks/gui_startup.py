"""Cold start of the desktop app to its first paint, in fresh processes (target: <= 1.5 s).

Each measurement starts a new Python process and stops the clock when the main window's first
paint event arrives. Side by side, in the same run, the floors it cannot beat: a bare Python
start, and Python + PySide6 + an empty QWidget painted. It also checks that torch and
transformers were not imported before the first paint.

    python benchmarks/gui_startup.py [--runs 5] [--xvfb]

``--xvfb`` runs the app on a real X server (Xvfb) instead of Qt's offscreen platform.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

TARGET_S = 1.5

BARE = "import time, sys; print(time.time() - float(sys.argv[1]))"

PAINT_PROBE = """
import sys, time
T0 = float(sys.argv[1])
from PySide6.QtCore import QEvent, QObject
from PySide6.QtWidgets import QApplication
{setup}
class FirstPaint(QObject):
    def eventFilter(self, obj, event):
        if event.type() == QEvent.Type.Paint and getattr(obj, "window", lambda: None)() is window:
            print(time.time() - T0, "torch" in sys.modules, "transformers" in sys.modules, flush=True)
            app.removeEventFilter(self)
            app.quit()
        return False
probe = FirstPaint()
app.installEventFilter(probe)
window.show()
app.exec()
{teardown}
"""

EMPTY_WIDGET = PAINT_PROBE.format(
    setup="from PySide6.QtWidgets import QWidget\napp = QApplication([])\nwindow = QWidget()\nwindow.resize(1320, 860)",
    teardown="")
DISTILL_GUI = PAINT_PROBE.format(
    setup="from distill_gui.gui.app import create_application, create_window\n"
          "app = create_application([])\nwindow = create_window(app)",
    teardown="window.close()")


def measure(code: str, env: dict[str, str]) -> tuple[float, list[str]]:
    start = time.time()
    result = subprocess.run([sys.executable, "-c", code, repr(start)], capture_output=True, text=True,
                            env=env, timeout=120)
    if result.returncode != 0 or not result.stdout.strip():
        raise RuntimeError(f"probe failed ({result.returncode}): {result.stderr[-2000:]}")
    first, *flags = result.stdout.split()
    return float(first), flags


def start_xvfb() -> tuple[subprocess.Popen, str]:
    if shutil.which("Xvfb") is None:
        raise SystemExit("Xvfb is not installed (apt-get install -y xvfb); run without --xvfb for offscreen.")
    display = ":97"
    server = subprocess.Popen(["Xvfb", display, "-screen", "0", "1600x1000x24", "-nolisten", "tcp"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    return server, display


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--xvfb", action="store_true", help="use an Xvfb X server instead of offscreen")
    args = parser.parse_args()

    server = None
    env = {**os.environ, "DISTILL_GUI_HOME": tempfile.mkdtemp(prefix="dg-startup-")}
    if args.xvfb:
        server, display = start_xvfb()
        env.update(DISPLAY=display, QT_QPA_PLATFORM="xcb")
    else:
        env["QT_QPA_PLATFORM"] = "offscreen"
    try:
        rows = {"python start": [], "PySide6 empty window": [], "distill-gui window": []}
        heavy_imported = False
        for _ in range(args.runs):   # interleaved, so machine load hits all three alike
            rows["python start"].append(measure(BARE, env)[0])
            rows["PySide6 empty window"].append(measure(EMPTY_WIDGET, env)[0])
            seconds, flags = measure(DISTILL_GUI, env)
            rows["distill-gui window"].append(seconds)
            heavy_imported |= "True" in flags
    finally:
        if server is not None:
            server.terminate()

    platform = "Xvfb (xcb)" if args.xvfb else "offscreen"
    print(f"cold start to first paint, {args.runs} fresh processes each, Qt platform {platform}")
    print(f"{'':24}{'median s':>10}{'min s':>8}{'max s':>8}{'x python':>10}{'x target':>10}")
    base = statistics.median(rows["python start"])
    for name, values in rows.items():
        med = statistics.median(values)
        print(f"{name:24}{med:10.3f}{min(values):8.3f}{max(values):8.3f}{med / base:10.1f}{med / TARGET_S:10.2f}")
    app_median = statistics.median(rows["distill-gui window"])
    print(f"target <= {TARGET_S} s: {'met' if app_median <= TARGET_S else 'NOT met'}; "
          f"torch/transformers imported before first paint: {'yes (bad)' if heavy_imported else 'no'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
