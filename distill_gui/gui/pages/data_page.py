"""Data page: a data file's first rows exactly as the student will see them, its lengths and problems."""

from __future__ import annotations

import html
import statistics
from typing import Any

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from distill_gui.errors import ConfigError
from distill_gui.gui import tasks, theme
from distill_gui.gui.config_store import ConfigStore
from distill_gui.gui.crash import ErrorInfo
from distill_gui.gui.pages.common import page_header
from distill_gui.gui.widgets.config_form import BoundField, label_of
from distill_gui.gui.widgets.histogram import LengthHistogram
from distill_gui.gui.widgets.path_edit import PathEdit
from distill_gui.gui.workers import TaskRunner

DATA_FILTER = "Training data (*.jsonl *.txt);;All files (*)"
PREVIEW_ROWS = 20
REPREVIEW_ON = {"", "data.train", "data.max_length", "data.loss_on", "student.model", "teacher.model"}


def row_segments(row: Any) -> list[tuple[str, bool]]:
    """A preview row as (text, trained) pairs, whatever container the engine uses for a row."""
    segments = getattr(row, "segments", row)
    out = []
    for seg in segments:
        if isinstance(seg, (tuple, list)):
            out.append((str(seg[0]), bool(seg[1])))
        else:
            out.append((str(getattr(seg, "text")), bool(getattr(seg, "trained"))))
    return out


def problem_fields(problem: Any) -> tuple[int | None, str]:
    """(line number, message) of one problem."""
    if isinstance(problem, (tuple, list)):
        return (int(problem[0]) if problem[0] is not None else None), str(problem[1])
    return getattr(problem, "line", None), str(getattr(problem, "message", problem))


def render_rows_html(rows: list[Any], colors: theme.ThemeColors) -> str:
    """The rows as HTML: trained text plain, masked (prompt) text greyed on a shaded background."""
    parts = [f'<div style="color:{colors.text}">']
    for row in rows:
        facts = [f"line {row.line}", f"{row.n_tokens:,} tokens", f"{row.n_trained:,} learned"]
        if row.truncated:
            facts.append("truncated at max length")
        parts.append(f'<p style="color:{colors.muted}; margin:10px 0 2px 0">{" · ".join(facts)}</p>')
        spans = []
        for text, trained in row_segments(row):
            escaped = html.escape(text)
            if trained:
                spans.append(f'<span style="color:{colors.text}">{escaped}</span>')
            else:
                spans.append(f'<span style="color:{colors.masked_text}; background-color:{colors.masked_background}">'
                             f'{escaped}</span>')
        parts.append('<pre style="white-space:pre-wrap; margin:0; font-family:\'DejaVu Sans Mono\',monospace">'
                     + "".join(spans) + "</pre>")
    parts.append("</div>")
    return "".join(parts)


class DataPage(QWidget):
    def __init__(self, store: ConfigStore, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store = store
        self.runner = TaskRunner(self)
        self.preview: Any = None
        self._build()
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(400)
        self._debounce.timeout.connect(self.refresh_preview)
        store.changed.connect(self._config_changed)
        theme.notifier().changed.connect(self._theme_changed)  # a method: disconnected when the page goes
        self._config_changed("")

    # ---- layout ------------------------------------------------------------------------------
    def _build(self) -> None:
        self.train_file = PathEdit(file_filter=DATA_FILTER, placeholder="a .jsonl or .txt file",
                                   dialog_title="Choose the training data")
        self.train_file.line.setObjectName("dataTrain")
        self.eval_file = PathEdit(file_filter=DATA_FILTER, placeholder="optional: held-out rows",
                                  dialog_title="Choose held-out data")
        self.train_file.path_edited.connect(lambda p: self._set_path("data.train", p, self.train_file))
        self.eval_file.path_edited.connect(lambda p: self._set_path("data.eval", p, self.eval_file))
        self.train_file.setToolTip(_help("data.train"))
        self.eval_file.setToolTip(_help("data.eval"))
        self.bound = [BoundField(self.store, key) for key in ("data.loss_on", "data.max_length", "data.eval_fraction")]
        self.preview_button = QPushButton("Preview")
        self.preview_button.setToolTip("Read the file again and show its first rows as the student sees them.")
        self.preview_button.clicked.connect(self.refresh_preview)

        form = QFormLayout()
        form.addRow("Training file", self.train_file)
        form.addRow("Eval file", self.eval_file)
        options = QHBoxLayout()
        for bound in self.bound:
            label = QLabel(label_of(bound.key))
            label.setToolTip(bound.help)
            options.addWidget(label)
            options.addWidget(bound.editor)
            options.addSpacing(12)
        options.addStretch(1)
        options.addWidget(self.preview_button)
        form.addRow("", _wrap(options))
        source = QGroupBox("Data")
        source.setLayout(form)

        self.badge = QLabel()
        self.badge.setObjectName("dataBadge")
        theme.set_badge(self.badge, "idle", "no preview")
        self.summary = QLabel("Choose a training file and a student model to preview the data.")
        self.summary.setObjectName("dataSummary")
        self.summary.setWordWrap(True)
        summary_row = QHBoxLayout()
        summary_row.addWidget(self.badge, 0, Qt.AlignmentFlag.AlignTop)
        summary_row.addWidget(self.summary, 1)

        self.rows_view = QTextBrowser()
        self.rows_view.setObjectName("dataRows")
        self.rows_view.setOpenLinks(False)
        self.rows_view.setPlaceholderText("The first rows appear here, rendered with the student's chat template.")
        legend = QLabel()
        legend.setObjectName("dataLegend")
        self.legend = legend
        rows_box = QGroupBox("First rows, as the student sees them")
        rows_layout = QVBoxLayout(rows_box)
        rows_layout.addWidget(legend)
        rows_layout.addWidget(self.rows_view, 1)

        self.histogram = LengthHistogram()
        hist_box = QGroupBox("Token lengths")
        QVBoxLayout(hist_box).addWidget(self.histogram)
        self.problems = QTableWidget(0, 2)
        self.problems.setObjectName("dataProblems")
        self.problems.setHorizontalHeaderLabels(["Line", "Problem"])
        self.problems.verticalHeader().setVisible(False)
        self.problems.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        self.problems.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.problems.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.problems.setWordWrap(True)
        self.problems.horizontalHeader().sectionResized.connect(lambda *_: self.problems.resizeRowsToContents())
        problems_box = QGroupBox("Problems")
        QVBoxLayout(problems_box).addWidget(self.problems)

        right = QSplitter(Qt.Orientation.Vertical)
        right.addWidget(hist_box)
        right.addWidget(problems_box)
        right.setSizes([300, 200])
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(rows_box)
        split.addWidget(right)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        split.setSizes([600, 400])

        layout = QVBoxLayout(self)
        layout.setContentsMargins(18, 14, 18, 14)
        layout.addWidget(page_header("Data", "The text the student learns from. Chat rows are rendered with the "
                                     "student's chat template; shaded parts are prompts it reads but is not "
                                     "trained on."))
        layout.addWidget(source)
        layout.addLayout(summary_row)
        layout.addWidget(split, 1)
        self._update_legend()

    def _update_legend(self) -> None:
        c = theme.current_colors()
        self.legend.setText(f'<span style="color:{c.text}">trained text</span> &nbsp; '
                            f'<span style="color:{c.masked_text}; background-color:{c.masked_background}">'
                            f'&nbsp;masked prompt (read, not learned)&nbsp;</span>')

    # ---- config --------------------------------------------------------------------------------
    def _set_path(self, key: str, path: str, editor: PathEdit) -> None:
        try:
            self.store.set(key, path)
        except ConfigError as exc:
            theme.set_invalid(editor.line, True)
            editor.line.setToolTip(exc.message)
            return
        theme.set_invalid(editor.line, False)

    def _config_changed(self, key: str) -> None:
        if key in ("", "data.train"):
            self.train_file.set_text(self.store.get("data.train"))
        if key in ("", "data.eval"):
            self.eval_file.set_text(self.store.get("data.eval"))
        if key in REPREVIEW_ON:
            self._debounce.start()

    # ---- preview -------------------------------------------------------------------------------
    def refresh_preview(self) -> None:
        cfg = self.store.config
        student_ref = cfg.teacher.model if cfg.student.model == "teacher" else cfg.student.model
        if not cfg.data.train:
            self._show_idle("Choose a training file to preview it.")
            return
        if not student_ref:
            self._show_idle("Choose the student on the Models page: the preview uses its tokenizer and chat "
                            "template.")
            return
        theme.set_badge(self.badge, "idle", "reading…")
        self.preview_button.setEnabled(False)
        self.runner.run("preview", tasks.preview, self.store.snapshot(), limit=PREVIEW_ROWS,
                        on_done=self._previewed, on_error=self._failed)

    def _show_idle(self, text: str) -> None:
        self.runner.cancel("preview")
        self.preview = None
        theme.set_badge(self.badge, "idle", "no preview")
        self.summary.setText(text)
        self.rows_view.clear()
        self.histogram.set_lengths([])
        self.problems.setRowCount(0)

    def _previewed(self, preview: Any) -> None:
        self.preview_button.setEnabled(True)
        self.preview = preview
        lengths = list(preview.token_lengths)
        problems = [problem_fields(p) for p in preview.problems]
        max_length = self.store.get("data.max_length")
        truncated = sum(1 for n in lengths if n >= max_length)
        parts = [f"{preview.row_count:,} rows" + ("" if preview.uses_chat_template else
                                                    " (the student has no chat template: plain text)")]
        if lengths:
            parts.append(f"tokens per row: median {statistics.median(lengths):,.0f}, max {max(lengths):,}")
            parts.append(f"{truncated:,} rows reach max length {max_length:,} (truncated)" if truncated
                         else f"none longer than max length {max_length:,}")
        parts.append(f"{len(problems)} problem{'s' if len(problems) != 1 else ''}" if problems else "no problems")
        self.summary.setText(" · ".join(parts))
        theme.set_badge(self.badge, "error" if problems else "ok", "problems found" if problems else "looks good")
        self._render()
        self.histogram.set_lengths(lengths, max_length)
        self.problems.setRowCount(len(problems))
        for index, (line, message) in enumerate(problems):
            self.problems.setItem(index, 0, QTableWidgetItem("" if line is None else str(line)))
            item = QTableWidgetItem(message)
            item.setToolTip(message)
            self.problems.setItem(index, 1, item)
        self.problems.resizeRowsToContents()

    def _theme_changed(self, _colors) -> None:
        self._render()

    def _render(self) -> None:
        self._update_legend()
        if self.preview is None:
            return
        self.rows_view.setHtml(render_rows_html(list(self.preview.rows), theme.current_colors()))

    def _failed(self, error: ErrorInfo) -> None:
        self.preview_button.setEnabled(True)
        self.preview = None
        theme.set_badge(self.badge, "error", "cannot read")
        self.summary.setText(error.message)
        self.rows_view.clear()
        self.histogram.set_lengths([])
        self.problems.setRowCount(0)

    def shutdown(self) -> None:
        self.runner.wait_all()


def _help(key: str) -> str:
    from distill_gui.gui.widgets.config_form import help_of

    return help_of(key)


def _wrap(layout) -> QWidget:
    widget = QWidget()
    layout.setContentsMargins(0, 0, 0, 0)
    widget.setLayout(layout)
    return widget
