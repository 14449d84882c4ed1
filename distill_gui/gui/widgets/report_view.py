"""A run's report.md rendered with its PNG plots (Qt's Markdown), images scaled to the view's width."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QUrl
from PySide6.QtGui import QImageReader, QTextCursor, QTextImageFormat
from PySide6.QtWidgets import QTextBrowser, QWidget

REPORT_FILE = "report.md"
MARGIN = 24


class ReportView(QTextBrowser):
    """Shows ``<run>/report.md``; a placeholder when there is none; progress while one is being written."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("runReport")
        self.setOpenExternalLinks(True)
        self.run_dir: Path | None = None
        self.images: dict[str, tuple[int, int]] = {}   # image name -> natural (width, height)
        self._placeholder("Select a run to see its report.")

    def show_run(self, run_dir: Path | None) -> None:
        """The run's report, or a note that it has none yet."""
        self.run_dir = Path(run_dir) if run_dir is not None else None
        if self.run_dir is None:
            self._placeholder("Select a run to see its report.")
            return
        report = self.run_dir / REPORT_FILE
        if not report.is_file():
            self._placeholder("This run has no report yet. Write report evaluates the teacher and the student "
                              "before and after on the run's held-out data and writes report.md with plots; "
                              "Report with CE control also trains plain fine-tuning at equal steps to compare.")
            return
        text = report.read_text(encoding="utf-8", errors="replace")
        self.clear()  # also drops cached images of an earlier report with the same names
        self.setSearchPaths([str(self.run_dir)])
        self.document().setBaseUrl(QUrl.fromLocalFile(str(self.run_dir) + "/"))
        self.setMarkdown(text)
        self.images = {}
        self._fit_images()

    def show_busy(self, run_dir: Path, message: str) -> None:
        self.run_dir = Path(run_dir)
        self._placeholder(f"Writing the report of {self.run_dir.name}: {message}")

    def show_progress(self, event: object) -> None:
        """A PhaseProgress of the report task (evaluating a model, training the control, writing)."""
        message = getattr(event, "message", "")
        done, total = getattr(event, "done", None), getattr(event, "total", None)
        if message and self.run_dir is not None:
            steps = f" ({int(done)}/{int(total)})" if getattr(event, "unit", "") == "steps" and total else ""
            self._placeholder(f"Writing the report of {self.run_dir.name}: {message}{steps}…")

    def _placeholder(self, text: str) -> None:
        self.images = {}
        self.setPlainText(text)

    # ---- images at the view's width ---------------------------------------------------------------
    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt name
        super().resizeEvent(event)
        if self.images:
            self._fit_images()

    def _fit_images(self) -> None:
        """Scale each image down to the view's width (never up), keeping its aspect ratio."""
        if self.run_dir is None:
            return
        available = max(200, self.viewport().width() - MARGIN)
        cursor = QTextCursor(self.document())
        block = self.document().begin()
        while block.isValid():
            it = block.begin()
            while not it.atEnd():
                fragment = it.fragment()
                fmt = fragment.charFormat()
                if fmt.isImageFormat():
                    image = fmt.toImageFormat()
                    width, height = self._natural_size(image.name())
                    if width and height:
                        scaled = QTextImageFormat(image)
                        scaled.setWidth(min(width, available))
                        scaled.setHeight(min(width, available) * height / width)
                        cursor.setPosition(fragment.position())
                        cursor.setPosition(fragment.position() + fragment.length(), QTextCursor.MoveMode.KeepAnchor)
                        cursor.setCharFormat(scaled)
                it += 1
            block = block.next()

    def _natural_size(self, name: str) -> tuple[int, int]:
        if name not in self.images:
            size = QImageReader(str(self.run_dir / name)).size() if self.run_dir is not None else None
            self.images[name] = (size.width(), size.height()) if size is not None and size.isValid() else (0, 0)
        return self.images[name]
