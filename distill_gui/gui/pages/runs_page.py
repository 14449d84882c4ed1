"""Runs page: the history of run folders; open one to see its plots, metrics and report.md; write a report
(optionally with the CE control) in a worker; delete; open the folder."""

from __future__ import annotations

import datetime as dt
import html
from pathlib import Path

from PySide6.QtCore import Qt, QUrl, Signal
from PySide6.QtGui import QColor, QDesktopServices
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from distill_gui.config import default_runs_dir
from distill_gui.formatting import metric, percent
from distill_gui.gui import theme
from distill_gui.gui.config_store import ConfigStore
from distill_gui.gui.crash import ErrorInfo, show_error
from distill_gui.gui.metrics_buffer import buffer_from_records
from distill_gui.gui.pages.common import page_header
from distill_gui.gui.run_history import RunSummary, delete_run, read_records, scan_runs, short_model
from distill_gui.gui.widgets.metric_plots import MetricPlots
from distill_gui.gui.widgets.report_view import ReportView
from distill_gui.gui.widgets.sparkline import SERIES_ROLE, SparklineDelegate
from distill_gui.gui.workers import TaskRunner

COLUMNS = ("Name", "Status", "Teacher → student", "Loss fn", "Steps", "Train loss", "Eval loss", "Perplexity",
           "Agreement", "Loss curve", "Modified")
SPARK_COLUMN = COLUMNS.index("Loss curve")
STATUS_BADGE = {"finished": "ok", "running": "ok", "stopped": "warn", "interrupted": "warn", "not started": "idle"}


class RunsPage(QWidget):
    resume_requested = Signal(str)        # run folder
    load_config_requested = Signal(str)   # config.toml of a run

    def __init__(self, store: ConfigStore, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store = store
        self.active_run: str | None = None
        self.runs: list[RunSummary] = []
        self.runner = TaskRunner(self)
        self._build()

    def _build(self) -> None:
        self.folder_label = QLabel()
        self.folder_label.setProperty("muted", True)
        self.refresh_button = QPushButton("Refresh")
        self.open_button = QPushButton("Open folder")
        self.resume_button = QPushButton("Resume")
        self.load_button = QPushButton("Use its config")
        self.delete_button = QPushButton("Delete…")
        self.report_button = QPushButton("Write report")
        self.control_button = QPushButton("Report with CE control")
        self.report_button.setToolTip("Evaluate the teacher and the student before and after on the run's held-out "
                                      "data and write report.md with plots into the run folder.")
        self.control_button.setToolTip("Also train the CE control (the same config with loss = ce, equal steps) "
                                       "so the report shows what distillation added over plain fine-tuning.")
        self.report_button.clicked.connect(lambda: self.write_report(control=False))
        self.control_button.clicked.connect(lambda: self.write_report(control=True))
        self.refresh_button.setToolTip("Read the runs folder again.")
        self.open_button.setToolTip("Open the run folder in the file manager.")
        self.resume_button.setToolTip("Continue an interrupted or stopped run from its latest checkpoint.")
        self.load_button.setToolTip("Copy this run's config into the Train page (to run it again or change it).")
        self.delete_button.setToolTip("Delete the run folder with its checkpoints and final model.")
        self.refresh_button.clicked.connect(self.refresh)
        self.open_button.clicked.connect(self.open_selected_folder)
        self.resume_button.clicked.connect(self._resume_selected)
        self.load_button.clicked.connect(self._load_selected_config)
        self.delete_button.clicked.connect(self.delete_selected)
        bar = QHBoxLayout()
        bar.addWidget(self.folder_label, 1)
        for button in (self.refresh_button, self.open_button, self.resume_button, self.load_button,
                       self.report_button, self.control_button, self.delete_button):
            bar.addWidget(button)

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setObjectName("runsTable")
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.table.setItemDelegateForColumn(SPARK_COLUMN, SparklineDelegate(self.table))
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(COLUMNS.index("Teacher → student"), QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(SPARK_COLUMN, QHeaderView.ResizeMode.Fixed)
        self.table.setColumnWidth(SPARK_COLUMN, 130)
        self.table.itemSelectionChanged.connect(self._selection_changed)

        self.details = QTextBrowser()
        self.details.setObjectName("runDetails")
        self.details.setOpenExternalLinks(False)
        self.plots = MetricPlots(live=False)
        self.plots.hint.setText("Select a run to see its plots.")
        self.report_view = ReportView()
        self.tabs = QTabWidget()
        self.tabs.addTab(self.plots, "Plots")
        self.tabs.addTab(self.report_view, "Report")
        bottom = QSplitter(Qt.Orientation.Horizontal)
        bottom.addWidget(self.details)
        bottom.addWidget(self.tabs)
        bottom.setSizes([330, 800])
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.table)
        split.addWidget(bottom)
        split.setSizes([170, 520])

        self.empty = QLabel()
        self.empty.setWordWrap(True)
        self.empty.setProperty("muted", True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(18, 14, 18, 14)
        layout.addWidget(page_header("Runs", "Every run folder: its status, settings and results. Select one to "
                                     "see its plots; resume what was interrupted."))
        layout.addLayout(bar)
        layout.addWidget(self.empty)
        layout.addWidget(split, 1)
        self._update_buttons()

    # ---- listing -----------------------------------------------------------------------------
    def runs_dirs(self) -> list[Path]:
        dirs = [default_runs_dir()]
        output_dir = self.store.config.output_dir
        if output_dir and Path(output_dir).resolve() != dirs[0].resolve():
            dirs.append(Path(output_dir))
        from distill_gui.workflows.demo import default_out_dir

        demo_runs = default_out_dir() / "runs"  # the offline demo's teacher and student runs
        if demo_runs.is_dir() and all(demo_runs.resolve() != d.resolve() for d in dirs):
            dirs.append(demo_runs)
        return dirs

    def showEvent(self, event) -> None:  # noqa: N802 - Qt name
        super().showEvent(event)
        self.refresh()

    def refresh(self) -> None:
        selected = self.selected_run()
        dirs = self.runs_dirs()
        self.runs = sorted((run for d in dirs for run in scan_runs(d, active=self.active_run)),
                           key=lambda r: r.modified, reverse=True)
        self.folder_label.setText("Runs in " + " and ".join(str(d) for d in dirs))
        self.empty.setText("No runs yet. Start one on the Train page; it appears here with its plots."
                           if not self.runs else "")
        self.empty.setVisible(not self.runs)
        self.table.setRowCount(len(self.runs))
        for row, run in enumerate(self.runs):
            self._fill_row(row, run)
        self.table.resizeRowsToContents()
        if selected is not None:
            for row, run in enumerate(self.runs):
                if run.path == selected.path:
                    self.table.selectRow(row)
        self._update_buttons()

    def _fill_row(self, row: int, run: RunSummary) -> None:
        steps = f"{run.last_step:,} / {run.total_steps:,}" if run.total_steps else f"{run.last_step:,}"
        student = "derived" if run.student == "teacher" else short_model(run.student)
        values = (run.name, run.status, f"{short_model(run.teacher)} → {student}", run.loss_name, steps,
                  metric(run.train_loss), metric(run.eval_loss), metric(run.perplexity), percent(run.agreement),
                  "", dt.datetime.fromtimestamp(run.modified).strftime("%Y-%m-%d %H:%M") if run.modified else "")
        for col, text in enumerate(values):
            item = QTableWidgetItem(text)
            if col == 0:
                item.setToolTip(str(run.path))
            if col == SPARK_COLUMN:
                item.setData(SERIES_ROLE, run.loss_series)
                item.setToolTip("Training loss over the run")
            if col == 1:
                colors = theme.current_colors()
                badge = STATUS_BADGE.get(run.status, "idle")
                color = {"ok": colors.ok, "warn": colors.warn, "idle": colors.muted}[badge]
                item.setForeground(QColor(color))
            self.table.setItem(row, col, item)

    def selected_run(self) -> RunSummary | None:
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        if not rows or rows[0].row() >= len(self.runs):
            return None
        return self.runs[rows[0].row()]

    def select_run(self, path: str | Path) -> bool:
        for row, run in enumerate(self.runs):
            if run.path.resolve() == Path(path).resolve():
                self.table.selectRow(row)
                return True
        return False

    def _update_buttons(self) -> None:
        run = self.selected_run()
        self.open_button.setEnabled(run is not None)
        self.load_button.setEnabled(run is not None)
        self.resume_button.setEnabled(run is not None and run.resumable and self.active_run is None)
        self.delete_button.setEnabled(run is not None and run.status != "running")
        can_report = run is not None and run.has_final and run.status != "running" and not self.runner.busy("report")
        self.report_button.setEnabled(can_report)
        self.control_button.setEnabled(can_report)

    # ---- details -----------------------------------------------------------------------------
    def _selection_changed(self) -> None:
        self._update_buttons()
        run = self.selected_run()
        if run is None:
            self.details.clear()
            self.plots.set_buffer(buffer_from_records([]))
            self.report_view.show_run(None)
            return
        self.details.setHtml(self._details_html(run))
        self.plots.set_buffer(buffer_from_records(read_records(run.path / "metrics.jsonl")), run.total_steps)
        if not self.runner.busy("report"):
            self.report_view.show_run(run.path)

    def _details_html(self, run: RunSummary) -> str:
        c = theme.current_colors()
        cfg = run.config
        train, distill, data = cfg.get("train", {}), cfg.get("distill", {}), cfg.get("data", {})
        rows = [
            ("Status", run.status + (" (resumable)" if run.resumable else "")),
            ("Folder", str(run.path)),
            ("Teacher", run.teacher), ("Student", run.student if run.student != "teacher" else
                                       f"derived from the teacher, layers {cfg.get('student', {}).get('keep_layers')}"),
            ("Data", str(data.get("train", ""))),
            ("Loss", f"{distill.get('loss', '')}, T = {distill.get('temperature', '')}, "
                     f"alpha = {distill.get('alpha', '')}"),
            ("Schedule", f"{train.get('max_steps', 0) or str(train.get('epochs', 0)) + ' epochs'} steps, batch "
                         f"{train.get('batch_size', '')} × {train.get('grad_accum', '')}, lr {train.get('lr', '')}"),
            ("Steps done", f"{run.last_step:,}"),
            ("Train loss", metric(run.train_loss)), ("Eval loss", metric(run.eval_loss)),
            ("Perplexity", metric(run.perplexity)), ("Agreement", percent(run.agreement)),
            ("Checkpoints", ", ".join(f"step {s:,}" for s in run.checkpoints) or "none"),
            ("Final model", str(run.path / "final") if run.has_final else "not yet"),
        ]
        if run.has_report:
            rows.append(("Report", str(run.path / "report.md")))
        cells = "".join(f'<tr><td style="color:{c.muted}; padding-right:10px; vertical-align:top">{html.escape(k)}</td>'
                        f'<td>{html.escape(str(v))}</td></tr>' for k, v in rows)
        return f'<h3 style="margin:0">{html.escape(run.name)}</h3><table style="margin-top:6px">{cells}</table>'

    # ---- actions ------------------------------------------------------------------------------
    def open_selected_folder(self) -> None:
        run = self.selected_run()
        if run is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(run.path)))

    def _resume_selected(self) -> None:
        run = self.selected_run()
        if run is not None and run.resumable:
            self.resume_requested.emit(str(run.path))

    def _load_selected_config(self) -> None:
        run = self.selected_run()
        if run is not None:
            self.load_config_requested.emit(str(run.path / "config.toml"))

    def confirm_delete(self, run: RunSummary) -> bool:
        """Ask before deleting (tests replace this)."""
        answer = QMessageBox.question(self, "Delete run",
                                      f"Delete the run folder {run.path} with its checkpoints and final model? "
                                      f"This cannot be undone.")
        return answer == QMessageBox.StandardButton.Yes

    def delete_selected(self) -> None:
        run = self.selected_run()
        if run is None or run.status == "running" or not self.confirm_delete(run):
            return
        allowed = [d.resolve() for d in self.runs_dirs()]
        try:
            delete_run(run.path, run.path.parent if run.path.parent.resolve() in allowed else allowed[0])
        except (OSError, ValueError) as exc:
            show_error(self, ErrorInfo(f"Cannot delete {run.path}: {exc}", title="Cannot delete"))
        self.refresh()

    # ---- the report ---------------------------------------------------------------------------
    def write_report(self, control: bool = False) -> None:
        """Evaluate the selected run and write its report.md in a worker (optionally training the CE control)."""
        run = self.selected_run()
        if run is None or not run.has_final or self.runner.busy("report"):
            return
        from distill_gui.workflows.control import report_run

        self.tabs.setCurrentWidget(self.report_view)
        self.report_view.show_busy(run.path, "training the CE control and evaluating…" if control else "evaluating…")
        self.runner.run("report", report_run, str(run.path), control=control,
                        on_done=lambda _path, path=run.path: self._report_written(path),
                        on_error=lambda error, path=run.path: self._report_failed(path, error),
                        on_progress=self.report_view.show_progress)
        self._update_buttons()

    def _report_written(self, path: Path) -> None:
        self.refresh()
        self.select_run(path)
        self.report_view.show_run(path)
        self.tabs.setCurrentWidget(self.report_view)
        self._update_buttons()

    def _report_failed(self, path: Path, error: ErrorInfo) -> None:
        self.report_view.show_run(path)
        self._update_buttons()
        show_error(self, error)

    def shutdown(self) -> None:
        self.runner.wait_all()

    def set_active_run(self, run_dir: str | None) -> None:
        self.active_run = run_dir or None
        if self.isVisible():
            self.refresh()
