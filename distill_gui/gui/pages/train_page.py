"""Train page: the settings form with presets and TOML load / save, run controls, live plots, log."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from distill_gui.config import config_from_dict, default_runs_dir, load_config, read_toml, resolve_paths
from distill_gui.errors import ConfigError, DistillError
from distill_gui.events import (
    CheckpointSaved,
    Control,
    EvalMetrics,
    Failed,
    Finished,
    LogMessage,
    Paused,
    PhaseProgress,
    Resumed,
    RunStarted,
    StepMetrics,
)
from distill_gui.formatting import human_bytes, human_count, human_duration, metric, percent
from distill_gui.gui import tasks, theme
from distill_gui.gui.config_store import ConfigStore
from distill_gui.gui.crash import ErrorInfo, show_error
from distill_gui.gui.metrics_buffer import MetricsBuffer, buffer_from_records, event_from_record
from distill_gui.gui.pages.common import page_header, scrollable
from distill_gui.gui.presets import PRESETS, apply_preset, matching_preset
from distill_gui.gui.run_history import read_records
from distill_gui.gui.widgets.config_form import ConfigForm
from distill_gui.gui.widgets.log_view import LogView
from distill_gui.gui.widgets.metric_plots import MetricPlots
from distill_gui.gui.workers import TrainWorker
from distill_gui.runfolder import RunFolder

SECTIONS = (
    ("Run", ["name", "output_dir"]),
    ("Distillation", ["distill.loss", "distill.temperature", "distill.alpha", "distill.beta", "distill.skew",
                      "distill.top_k", "distill.top_k_mode"]),
    ("Schedule", ["train.max_steps", "train.epochs", "train.batch_size", "train.grad_accum", "train.lr",
                  "train.warmup_steps", "train.scheduler", "train.weight_decay", "train.max_grad_norm",
                  "train.optimizer", "train.seed"]),
    ("Hardware", ["train.device", "train.precision", "train.gradient_checkpointing", "teacher.load_in"]),
    ("LoRA", ["student.lora_rank", "student.lora_alpha"]),
    ("Checkpoints and logging", ["train.log_every", "train.eval_every", "train.save_every",
                                 "train.keep_checkpoints"]),
)
TOML_FILTER = "Run config (*.toml);;All files (*)"
CUSTOM = "Custom"

# Run states; the buttons follow them.
IDLE, STARTING, RUNNING, PAUSED, STOPPING = "idle", "starting", "running", "paused", "stopping"


class TrainPage(QWidget):
    run_started = Signal(str)          # run folder
    run_ended = Signal(str)            # run folder (finished, stopped or failed)
    state_changed = Signal(str)
    status_text = Signal(str)          # one line for the window's status bar

    def __init__(self, store: ConfigStore, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store = store
        self.state = IDLE
        self.worker: TrainWorker | None = None
        self.control: Control | None = None
        self.run_dir: str | None = None
        self.config_path: Path | None = None
        self.total_steps = 0
        self.last_event: Any = None
        self.buffer = MetricsBuffer()
        self._phase = ""
        self._make_actions()
        self._build()
        store.changed.connect(self._config_changed)
        self._config_changed("")
        self._set_state(IDLE)

    # ---- actions (the window puts them in its Run menu, so the shortcuts work on every page) ---
    def _make_actions(self) -> None:
        def action(text: str, shortcuts: list[str], slot, tip: str) -> QAction:
            act = QAction(text, self)
            act.setShortcuts([QKeySequence(s) for s in shortcuts])
            act.setShortcutContext(Qt.ShortcutContext.ApplicationShortcut)
            act.setToolTip(f"{tip} ({' or '.join(shortcuts)})")
            act.triggered.connect(slot)
            return act

        self.start_action = action("Start", ["F5", "Ctrl+Return"], lambda: self.start(), "Start training")
        self.pause_action = action("Pause / Resume", ["F6"], self.toggle_pause, "Pause or resume training")
        self.stop_action = action("Stop", ["Shift+F5"], self.stop, "Stop: save a checkpoint and a usable final model")
        self.resume_run_action = action("Resume run…", ["Ctrl+Shift+R"], self.choose_run_to_resume,
                                        "Continue an interrupted run from its latest checkpoint")
        self.open_action = action("Open config…", ["Ctrl+O"], self.choose_config_to_load, "Load a run config (TOML)")
        self.save_action = action("Save config", ["Ctrl+S"], self.save_config, "Save the run config (TOML)")
        self.save_as_action = action("Save config as…", ["Ctrl+Shift+S"], self.save_config_as,
                                     "Save the run config to a new TOML file")

    # ---- layout ------------------------------------------------------------------------------
    def _build(self) -> None:
        self.preset = QComboBox()
        self.preset.setObjectName("preset")
        self.preset.addItem(CUSTOM)
        for index, preset in enumerate(PRESETS, start=1):
            self.preset.addItem(preset.name)
            self.preset.setItemData(index, preset.description, Qt.ItemDataRole.ToolTipRole)
        self.preset.setToolTip("Presets set the loss, schedule and lengths; models and data stay.")
        self.preset.activated.connect(self._preset_chosen)
        load_button, save_button = QPushButton("Load…"), QPushButton("Save…")
        load_button.setToolTip("Load a run config (the TOML file `distill-gui train` takes).")
        save_button.setToolTip("Save this run config as TOML, for `distill-gui train CONFIG.toml`.")
        load_button.clicked.connect(self.choose_config_to_load)
        save_button.clicked.connect(self.save_config_as)
        top = QHBoxLayout()
        top.addWidget(QLabel("Preset"))
        top.addWidget(self.preset, 1)
        top.addWidget(load_button)
        top.addWidget(save_button)

        form_body = QWidget()
        form_layout = QVBoxLayout(form_body)
        form_layout.setContentsMargins(0, 0, 6, 0)
        self.forms: dict[str, ConfigForm] = {}
        for title, keys in SECTIONS:
            box = QGroupBox(title)
            form = ConfigForm(self.store, keys)
            QVBoxLayout(box).addWidget(form)
            form_layout.addWidget(box)
            self.forms[title] = form
        form_layout.addStretch(1)
        self.forms["Run"].editor("output_dir").setPlaceholderText(str(default_runs_dir()))
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addLayout(top)
        left_layout.addWidget(scrollable(form_body), 1)
        left.setMinimumWidth(300)

        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(6, 0, 0, 0)
        right_layout.addLayout(self._controls())
        right_layout.addLayout(self._progress_row())
        self.plots = MetricPlots(self.buffer)
        self.log = LogView()
        split_v = QSplitter(Qt.Orientation.Vertical)
        split_v.addWidget(self.plots)
        split_v.addWidget(self.log)
        split_v.setStretchFactor(0, 4)
        split_v.setStretchFactor(1, 1)
        split_v.setSizes([520, 140])
        right_layout.addWidget(split_v, 1)

        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(left)
        self.splitter.addWidget(right)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setSizes([370, 900])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(18, 14, 18, 14)
        layout.addWidget(page_header("Train", "Distill the teacher into the student. Start runs in the "
                                     "background; the plots and the log follow it live."))
        layout.addWidget(self.splitter, 1)

    def _controls(self) -> QVBoxLayout:
        self.start_button = QPushButton("Start")
        self.start_button.setObjectName("primary")
        self.pause_button, self.resume_button = QPushButton("Pause"), QPushButton("Resume")
        self.stop_button, self.resume_run_button = QPushButton("Stop"), QPushButton("Resume run…")
        for button, act in ((self.start_button, self.start_action), (self.stop_button, self.stop_action),
                            (self.resume_run_button, self.resume_run_action)):
            button.setToolTip(act.toolTip())
            button.clicked.connect(act.trigger)
        self.pause_button.setToolTip("Pause after the current step (F6)")
        self.resume_button.setToolTip("Continue a paused run (F6)")
        self.pause_button.clicked.connect(self.pause)
        self.resume_button.clicked.connect(self.resume)
        self.free_memory = QCheckBox("Free GPU while paused")
        self.free_memory.setToolTip("On pause, save a checkpoint and release the GPU memory (for other programs); "
                                    "Resume loads it back.")
        self.state_badge = QLabel()
        self.state_badge.setObjectName("trainState")
        buttons = QHBoxLayout()
        for widget in (self.start_button, self.pause_button, self.resume_button, self.stop_button):
            buttons.addWidget(widget)
        buttons.addStretch(1)
        buttons.addWidget(self.state_badge)
        options = QHBoxLayout()
        options.addWidget(self.free_memory)
        options.addStretch(1)
        options.addWidget(self.resume_run_button)
        column = QVBoxLayout()
        column.addLayout(buttons)
        column.addLayout(options)
        return column

    def _progress_row(self) -> QVBoxLayout:
        self.progress = QProgressBar()
        self.progress.setObjectName("trainProgress")
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("not started")
        self.progress.setTextVisible(True)
        self.stats = QLabel("Elapsed – · ETA – · loss – · agreement – · tokens/s –")
        self.stats.setObjectName("trainStats")
        self.stats.setProperty("muted", True)
        # A changing text must not re-lay out the page ten times a second.
        self.stats.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self._shown_step = None
        self._status_timer = QTimer(self)
        self._status_timer.setInterval(100)
        self._status_timer.timeout.connect(self._refresh_status)
        self._status_timer.start()
        column = QVBoxLayout()
        column.addWidget(self.progress)
        column.addWidget(self.stats)
        return column

    # ---- form state ---------------------------------------------------------------------------
    def _config_changed(self, key: str) -> None:
        cfg = self.store.config
        if key in ("", "distill.loss", "distill.top_k", "train.max_steps"):
            loss = cfg.distill.loss
            enable = {
                "distill.temperature": loss != "ce", "distill.alpha": loss != "ce", "distill.beta": loss == "jsd",
                "distill.skew": loss.startswith("skew_"), "distill.top_k": loss != "ce",
                "distill.top_k_mode": loss != "ce" and cfg.distill.top_k > 0,
                "train.epochs": cfg.train.max_steps == 0,
            }
            for k, on in enable.items():
                self._editor(k).setEnabled(on)
        name = matching_preset(cfg) or CUSTOM
        if self.preset.currentText() != name:
            self.preset.setCurrentText(name)

    def _editor(self, key: str) -> QWidget:
        for form in self.forms.values():
            if key in form.fields:
                return form.editor(key)
        raise KeyError(key)

    def _preset_chosen(self, index: int) -> None:
        name = self.preset.itemText(index)
        if name == CUSTOM:
            return
        trial = self.store.snapshot()
        apply_preset(trial, name)
        self.store.set_many({key: trial.get(key) for key in next(p for p in PRESETS if p.name == name).values})
        self.log.append(f"Preset '{name}' applied.")

    # ---- config files -----------------------------------------------------------------------------
    def choose_config_to_load(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load a run config", str(self.config_path or Path.home()),
                                              TOML_FILTER)
        if path:
            self.load_config_file(path)

    def load_config_file(self, path: str | Path) -> bool:
        """Load a TOML config into the form (keys and values checked; models and data may be unset)."""
        path = Path(path)
        try:
            data, text = read_toml(path)
            cfg = config_from_dict(data, source=str(path), text=text)
            resolve_paths(cfg, base_dir=path.parent)
        except ConfigError as exc:
            show_error(self, ErrorInfo.from_exception(exc))
            return False
        self.store.replace(cfg)
        self.config_path = path
        self.log.append(f"Config loaded from {path}.")
        self.status_text.emit(f"Config loaded from {path}")
        return True

    def save_config(self) -> None:
        if self.config_path is None:
            self.save_config_as()
        else:
            self.save_config_file(self.config_path)

    def save_config_as(self) -> None:
        start = str(self.config_path or Path.home() / f"{self.store.config.name}.toml")
        path, _ = QFileDialog.getSaveFileName(self, "Save the run config", start, TOML_FILTER)
        if path:
            if not path.endswith(".toml"):
                path += ".toml"
            self.save_config_file(path)

    def save_config_file(self, path: str | Path) -> bool:
        try:
            saved = self.store.config.save(path)
        except OSError as exc:
            show_error(self, ErrorInfo(f"Cannot write {path}: {exc.strerror or exc}. Choose another folder.",
                                       title="Cannot save"))
            return False
        self.config_path = saved
        self.log.append(f"Config saved to {saved} (run it with: distill-gui train {saved}).")
        self.status_text.emit(f"Config saved to {saved}")
        return True

    # ---- starting and controlling a run ------------------------------------------------------
    def is_running(self) -> bool:
        return self.state != IDLE

    def start(self, *, resume: bool = False) -> bool:
        """Start the run the form describes (``resume``: continue its latest checkpoint)."""
        if self.state != IDLE:
            return False
        try:
            cfg = tasks.check_runnable(self.store.config)
        except ConfigError as exc:
            show_error(self, ErrorInfo.from_exception(exc))
            return False
        run_dir = cfg.run_dir()
        if not resume and RunFolder(run_dir).holds_run():
            new_name = _free_name(run_dir)
            choice = self.ask_existing_run(run_dir, new_name)
            if choice == "cancel":
                return False
            if choice == "rename":
                self.store.set("name", new_name)
                cfg.name = new_name
            resume = choice == "resume"
        self._launch(cfg, resume)
        return True

    def ask_existing_run(self, run_dir: Path, new_name: str) -> str:
        """'resume' | 'rename' | 'cancel' when the run folder already holds a run (tests replace this)."""
        box = QMessageBox(self)
        box.setIcon(QMessageBox.Icon.Question)
        box.setWindowTitle("This run exists")
        box.setText(f"The run folder {run_dir} already holds a run.\n\nContinue it from its latest checkpoint, "
                    f"or start a new run named '{new_name}'?")
        resume = box.addButton("Continue it", QMessageBox.ButtonRole.AcceptRole)
        rename = box.addButton(f"New run '{new_name}'", QMessageBox.ButtonRole.ActionRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.exec()
        clicked = box.clickedButton()
        return "resume" if clicked is resume else "rename" if clicked is rename else "cancel"

    def _launch(self, cfg, resume: bool) -> None:
        self.control = Control()
        self.worker = TrainWorker(cfg, resume=resume, control=self.control)
        self.worker.event.connect(self._on_event)
        self.worker.crashed.connect(self._on_crash)
        self.worker.finished.connect(self._thread_done)
        self.run_dir = str(cfg.run_dir())
        self.total_steps = 0
        self.buffer.clear()
        if resume:  # show the history up to the checkpoint while the models load
            self.buffer = buffer_from_records(read_records(Path(self.run_dir) / "metrics.jsonl"))
        self.plots.set_buffer(self.buffer)
        self._phase = ""
        self.progress.setRange(0, 0)
        self.progress.setFormat("starting…")
        self.log.append(f"{'Resuming' if resume else 'Starting'} run '{cfg.name}' in {self.run_dir}.")
        self._set_state(STARTING)
        self.worker.start()
        self.run_started.emit(self.run_dir)

    def pause(self) -> None:
        if self.state in (RUNNING, STARTING) and self.control is not None:
            self.control.pause(free_memory=self.free_memory.isChecked())
            self.log.append("Pausing after the current step…")
            self._set_state(PAUSED)

    def resume(self) -> None:
        if self.state == PAUSED and self.control is not None:
            self.control.resume()
            self._set_state(RUNNING)

    def toggle_pause(self) -> None:
        if self.state == PAUSED:
            self.resume()
        else:
            self.pause()

    def stop(self) -> None:
        if self.state in (RUNNING, PAUSED, STARTING) and self.control is not None:
            self.control.stop()
            self.log.append("Stopping: saving a checkpoint and the final model…")
            self._set_state(STOPPING)

    def choose_run_to_resume(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose the run folder to resume", str(default_runs_dir()))
        if folder:
            self.resume_run_folder(folder)

    def resume_run_folder(self, folder: str | Path) -> bool:
        """Load ``folder/config.toml`` and continue that run from its latest checkpoint."""
        if self.state != IDLE:
            return False
        folder = Path(folder)
        try:
            cfg = load_config(folder / "config.toml")
        except DistillError as exc:
            show_error(self, ErrorInfo(f"{folder} cannot be resumed: {exc.message}", title="Cannot resume",
                                       user_error=True))
            return False
        cfg.name, cfg.output_dir = folder.name, str(folder.parent)
        self.store.replace(cfg)
        return self.start(resume=True)

    # ---- events from the worker ---------------------------------------------------------------
    def _on_event(self, event: Any) -> None:
        self.last_event = event
        if self.buffer.add(event):
            if isinstance(event, StepMetrics):
                self._show_step(event)
            else:
                self._show_eval(event)
            return
        handler = {RunStarted: self._run_started, PhaseProgress: self._phase_progress,
                   CheckpointSaved: self._checkpoint, Paused: self._paused, Resumed: self._resumed,
                   LogMessage: self._log_message, Finished: self._finished, Failed: self._failed}.get(type(event))
        if handler is not None:
            handler(event)

    def _run_started(self, e: RunStarted) -> None:
        self.run_dir = e.run_dir
        self.total_steps = e.total_steps
        if e.start_step:
            self._drop_after(e.start_step)
        self.plots.set_total_steps(e.total_steps)
        self.progress.setRange(0, max(e.total_steps, 1))
        self.progress.setValue(e.start_step)
        self.progress.setFormat(f"step {e.start_step:,} / {e.total_steps:,}")
        teacher = f"teacher {human_count(e.teacher_params)}, " if e.teacher_params else ""
        self.log.append(f"Training on {e.device} ({e.precision}): {teacher}student {human_count(e.student_params)} "
                        f"parameters ({human_count(e.trainable_params)} trained), {e.total_steps:,} steps"
                        + (f", resumed at step {e.start_step:,}" if e.start_step else "") + ".")
        if self.state == STARTING:
            self._set_state(RUNNING)

    def _drop_after(self, step: int) -> None:
        """A resumed run replays steps after its checkpoint: drop the old points beyond it."""
        kept = MetricsBuffer()
        for record in read_records(Path(self.run_dir or "") / "metrics.jsonl"):
            event = event_from_record(record)
            if event is not None and event.step <= step:
                kept.add(event)
        self.buffer = kept
        self.plots.set_buffer(kept, self.total_steps)

    def _phase_progress(self, e: PhaseProgress) -> None:
        if e.phase != self._phase or e.message:
            self._phase = e.phase
            self.log.append(e.message or f"{e.phase.capitalize()}…")
        if self.total_steps:  # training has begun: the bar shows steps; saves go to the log only
            return
        if e.total:
            self.progress.setRange(0, 1000)
            self.progress.setValue(int(1000 * min(e.done / e.total, 1.0)))
            amount = f"{human_bytes(e.done)} / {human_bytes(e.total)}" if e.unit == "B" else \
                f"{e.done:,.0f} / {e.total:,.0f} {e.unit}".strip()
            self.progress.setFormat(f"{e.phase}: {amount}")
        else:
            self.progress.setRange(0, 0)
            self.progress.setFormat(f"{e.phase}…")

    def _show_step(self, e: StepMetrics) -> None:
        # Only the log line here; bar and figures follow on the 10 Hz status timer.
        self.log.append(f"step {e.step:,}/{e.total_steps or self.total_steps:,}  loss {metric(e.loss)}  "
                        f"KD {metric(e.kd)}  CE {metric(e.ce)}  agree {percent(e.agreement)}  lr {e.lr:.3g}  "
                        f"{e.tokens_per_s:,.0f} tok/s")
        if self.state == STARTING:
            self._set_state(RUNNING)

    def _refresh_status(self) -> None:
        """Progress bar, figures and status line from the newest step (at most ~10 times a second)."""
        e = self.buffer.last_step
        if e is None or e is self._shown_step:
            return
        self._shown_step = e
        total = e.total_steps or self.total_steps or 1
        if self.progress.maximum() != total:
            self.progress.setRange(0, total)
        self.progress.setValue(min(e.step, total))
        self.progress.setFormat(f"step {e.step:,} / {total:,}")
        self.stats.setText(
            f"Elapsed {human_duration(e.elapsed_s)} · ETA {human_duration(e.eta_s)} · loss {metric(e.loss)} "
            f"(KD {metric(e.kd)}, CE {metric(e.ce)}) · agreement {percent(e.agreement)} · "
            f"{e.tokens_per_s:,.0f} tokens/s · memory {human_bytes(e.memory_bytes)}")
        self.status_text.emit(f"Training: step {e.step:,} / {total:,}, loss {metric(e.loss)}, "
                              f"ETA {human_duration(e.eta_s)}")

    def _show_eval(self, e: EvalMetrics) -> None:
        self.log.append(f"eval at step {e.step:,}: loss {metric(e.loss)}  perplexity {metric(e.perplexity)}  "
                        f"agreement {percent(e.agreement)}")

    def _checkpoint(self, e: CheckpointSaved) -> None:
        self.log.append(f"Checkpoint saved at step {e.step:,}: {e.path}")

    def _paused(self, e: Paused) -> None:
        self.log.append(f"Paused at step {e.step:,}" + (" (GPU memory freed)." if e.freed_memory else "."))
        self.status_text.emit(f"Training paused at step {e.step:,}")
        if self.state in (RUNNING, STARTING):
            self._set_state(PAUSED)

    def _resumed(self, e: Resumed) -> None:
        self.log.append(f"Resumed at step {e.step:,}.")
        if self.state == PAUSED:
            self._set_state(RUNNING)

    def _log_message(self, e: LogMessage) -> None:
        self.log.append(e.message, e.level)

    def _finished(self, e: Finished) -> None:
        self._refresh_status()
        if e.stopped_early and not e.final_dir:  # stopped while the teacher answered or was cached
            self.log.append("Stopped before training. Start the run again to continue where the teacher stopped.")
        elif e.stopped_early:
            self.log.append(f"Stopped at step {e.step:,}. The final model is in {e.final_dir}; "
                            f"Resume run… continues from the checkpoint.")
        else:
            self.log.append(f"Finished at step {e.step:,}. The distilled student is in {e.final_dir}.")
        self.progress.setFormat(f"{'stopped' if e.stopped_early else 'done'}: step {e.step:,} / "
                                f"{self.total_steps or e.step:,}")
        if not e.stopped_early and self.total_steps:
            self.progress.setRange(0, self.total_steps)
            self.progress.setValue(self.total_steps)
        self.status_text.emit(f"Training {'stopped' if e.stopped_early else 'finished'} at step {e.step:,}")

    def _failed(self, e: Failed) -> None:
        self.log.append(e.message, "error")
        self.progress.setFormat("failed")
        self.status_text.emit("Training failed")
        show_error(self, ErrorInfo(e.message, e.details, title="Training failed"))

    def _on_crash(self, info: ErrorInfo) -> None:
        self.log.append(info.message, "error")
        show_error(self, info)

    def _thread_done(self) -> None:
        run_dir = self.run_dir or ""
        if self.worker is not None:
            self.worker.deleteLater()
        self.worker, self.control = None, None
        self.plots.refresh()
        self.log.flush()
        self._set_state(IDLE)
        self.run_ended.emit(run_dir)

    def _set_state(self, state: str) -> None:
        self.state = state
        idle = state == IDLE
        self.start_button.setEnabled(idle)
        self.start_action.setEnabled(idle)
        self.resume_run_button.setEnabled(idle)
        self.resume_run_action.setEnabled(idle)
        self.pause_button.setEnabled(state in (RUNNING, STARTING))
        self.resume_button.setEnabled(state == PAUSED)
        self.pause_action.setEnabled(state in (RUNNING, STARTING, PAUSED))
        self.stop_button.setEnabled(state in (RUNNING, PAUSED, STARTING))
        self.stop_action.setEnabled(state in (RUNNING, PAUSED, STARTING))
        self.open_action.setEnabled(idle)
        self.free_memory.setEnabled(state != STOPPING)
        for form in self.forms.values():
            form.setEnabled(idle)
        self.preset.setEnabled(idle)
        kind = {IDLE: "idle", STARTING: "warn", RUNNING: "ok", PAUSED: "warn", STOPPING: "warn"}[state]
        theme.set_badge(self.state_badge, kind, state)
        if idle and self.progress.maximum() == 0:
            self.progress.setRange(0, 1)
            self.progress.setFormat("not started")
        self.state_changed.emit(state)

    def shutdown(self, timeout_ms: int = 60_000) -> bool:
        """Stop a running run and wait for it (the window is closing)."""
        if self.worker is not None:
            if self.control is not None:
                self.control.stop()
            return self.worker.wait(timeout_ms)
        return True


def _free_name(run_dir: Path) -> str:
    """``name-2``, ``name-3``… : the first that does not hold a run yet."""
    base, number = run_dir.name, 2
    while RunFolder(run_dir.with_name(f"{base}-{number}")).holds_run():
        number += 1
    return f"{base}-{number}"
