"""Export page: a run's student (or any HF folder) -> GGUF + Modelfile -> registered in Ollama, verified.

Left: what to export (run + checkpoint, or a folder), the GGUF type with the size of each, the output
folder, the Ollama name (validated as typed, suggested from the run with a version tag), quantize on
register, system prompt and context. Right: the generated Modelfile, editable, with Reset. Export and
Register run in workers (``export_tasks``) with progress and Cancel; the result panel says what was
written and verified, or exactly what went wrong.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QFontDatabase
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QSizePolicy,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from distill_gui.chatlog import remember_registered
from distill_gui.config import default_runs_dir
from distill_gui.errors import DistillError
from distill_gui.export import GGUF_TYPE_NAMES, OLLAMA_QUANTIZE_TYPES, validate_ollama_name
from distill_gui.export.pipeline import QUANTIZABLE_SOURCES
from distill_gui.formatting import human_bytes, human_duration
from distill_gui.gui import export_tasks, theme
from distill_gui.gui.crash import ErrorInfo, show_error
from distill_gui.gui.pages.common import muted_label, page_header, scrollable
from distill_gui.gui.run_history import scan_runs
from distill_gui.gui.widgets.path_edit import PathEdit
from distill_gui.gui.workers import TaskRunner
from distill_gui.runfolder import RunFolder

TYPE_HELP = {"f32": "full precision, largest", "f16": "half precision; Ollama can quantize it further",
             "bf16": "bfloat16; Ollama can quantize it further", "q8_0": "8-bit, near-lossless",
             "q4_0": "4-bit, smallest", "q4_1": "4-bit with offsets", "q5_0": "5-bit", "q5_1": "5-bit with offsets"}
PHASES = {"export": "Writing the GGUF", "register-hash": "Hashing the GGUF", "register-upload": "Uploading to Ollama",
          "register-create": "Ollama is creating the model", "register-verify": "Reading the model back",
          "register-probe": "Probe chat"}


class ExportPage(QWidget):
    registered = Signal(str)          # model name, once registered and verified
    chat_requested = Signal(str)      # "Chat with it"
    status_text = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.runner = TaskRunner(self)
        self.source: export_tasks.SourceInfo | None = None
        self.exported: tuple[tuple[Any, ...], export_tasks.ExportedFiles] | None = None
        self.cancel_flag: export_tasks.CancelFlag | None = None
        self.generated_text = ""          # the Modelfile as last generated (Reset restores it)
        self.last_outcome: Any = None
        self.last_error: ErrorInfo | None = None
        self._loaded = False
        self._shown_run: str | None = None
        self._preview_timer = QTimer(self)
        self._preview_timer.setSingleShot(True)
        self._preview_timer.setInterval(300)
        self._preview_timer.timeout.connect(self.regenerate_modelfile)
        self._build()
        self._source_kind_changed(True)

    # ---- layout --------------------------------------------------------------------------------------
    def _build(self) -> None:
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(self._source_box())
        left_layout.addWidget(self._gguf_box())
        left_layout.addWidget(self._ollama_box())
        left_layout.addStretch(1)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.setChildrenCollapsible(False)
        splitter.addWidget(scrollable(left))
        splitter.addWidget(self._modelfile_box())
        splitter.setSizes([560, 640])

        layout = QVBoxLayout(self)
        layout.setContentsMargins(18, 14, 18, 14)
        layout.addWidget(page_header("Export", "Turn the distilled student into a GGUF file with an Ollama "
                                     "Modelfile, register it in Ollama, and check that it answers and stops."))
        layout.addWidget(splitter, 1)
        layout.addLayout(self._actions_row())
        layout.addWidget(self._result_panel())

    def _source_box(self) -> QGroupBox:
        box = QGroupBox("Model to export")
        self.from_run = QRadioButton("A run")
        self.from_folder = QRadioButton("Any Hugging Face folder")
        self.from_run.setChecked(True)
        group = QButtonGroup(box)
        group.addButton(self.from_run)
        group.addButton(self.from_folder)
        self.from_run.toggled.connect(self._source_kind_changed)
        self.run_combo = QComboBox()
        self.run_combo.setObjectName("exportRun")
        self.run_combo.setToolTip("Runs in the runs folder that have a final model or checkpoints.")
        self.run_combo.currentIndexChanged.connect(self._run_changed)
        self.refresh_runs_button = QPushButton("Refresh")
        self.refresh_runs_button.clicked.connect(self.refresh_runs)
        self.checkpoint_combo = QComboBox()
        self.checkpoint_combo.setObjectName("exportCheckpoint")
        self.checkpoint_combo.setToolTip("final: the finished student (LoRA merged). step-N: a checkpoint.")
        self.checkpoint_combo.currentIndexChanged.connect(lambda _i: self._source_changed())
        self.folder = PathEdit(folder=True, placeholder="a folder with config.json, safetensors and a tokenizer",
                               dialog_title="Choose a Hugging Face model folder")
        self.folder.path_edited.connect(lambda _p: self._source_changed())
        self.source_note = muted_label("")
        run_row = QHBoxLayout()
        run_row.addWidget(self.run_combo, 1)
        run_row.addWidget(self.refresh_runs_button)
        kinds = QHBoxLayout()
        kinds.addWidget(self.from_run)
        kinds.addWidget(self.from_folder)
        kinds.addStretch(1)
        form = QFormLayout(box)
        form.addRow(kinds)
        form.addRow("Run", run_row)
        form.addRow("Checkpoint", self.checkpoint_combo)
        form.addRow("Folder", self.folder)
        form.addRow(self.source_note)
        return box

    def _gguf_box(self) -> QGroupBox:
        box = QGroupBox("GGUF file")
        self.type_combo = QComboBox()
        self.type_combo.setObjectName("ggufType")
        for name in GGUF_TYPE_NAMES:
            self.type_combo.addItem(name, name)
        self.type_combo.setCurrentIndex(GGUF_TYPE_NAMES.index("f16"))
        self.type_combo.setToolTip("Weight type of the file; the size each type takes is shown next to it.")
        self.out_dir = PathEdit(folder=True, placeholder="<run>/export", dialog_title="Choose the output folder")
        self.out_dir.path_edited.connect(lambda _p: self._update_buttons())
        form = QFormLayout(box)
        form.addRow("Type", self.type_combo)
        form.addRow("Output folder", self.out_dir)
        return box

    def _ollama_box(self) -> QGroupBox:
        box = QGroupBox("Ollama")
        self.name_edit = QLineEdit()
        self.name_edit.setObjectName("ollamaName")
        self.name_edit.setPlaceholderText("name[:tag], e.g. my-student:v1")
        self.name_edit.setToolTip("The name the model gets in Ollama (and the GGUF file's name).")
        self.name_edit.textEdited.connect(self._name_edited)
        self.name_edit.textChanged.connect(self._validate_name)
        self.suggest_button = QPushButton("Suggest")
        self.suggest_button.setToolTip("The run's name with the next free version tag.")
        self.suggest_button.clicked.connect(self.suggest_name)
        self.name_problem = QLabel()
        self.name_problem.setObjectName("nameProblem")
        self.name_problem.setWordWrap(True)
        self.quantize_combo = QComboBox()
        self.quantize_combo.setObjectName("quantize")
        self.quantize_combo.addItem("none (keep the GGUF's type)", "")
        for name in OLLAMA_QUANTIZE_TYPES:
            self.quantize_combo.addItem(name, name)
        self.quantize_combo.setToolTip("Ask Ollama to quantize while registering (needs an f16 or bf16 GGUF).")
        self.quantize_combo.currentIndexChanged.connect(lambda _i: self._update_buttons())
        self.type_combo.currentIndexChanged.connect(self._type_changed)
        self.system_edit = QPlainTextEdit()
        self.system_edit.setObjectName("exportSystem")
        self.system_edit.setPlaceholderText("Default system prompt (empty: the chat template's own, if any)")
        self.system_edit.setFixedHeight(64)
        self.system_edit.textChanged.connect(self._settings_changed)
        self.num_ctx = QSpinBox()
        self.num_ctx.setRange(0, 1_048_576)
        self.num_ctx.setSingleStep(1024)
        self.num_ctx.setSpecialValueText("auto (min(4096, trained))")
        self.num_ctx.setToolTip("PARAMETER num_ctx: the context window Ollama runs the model with.")
        self.num_ctx.valueChanged.connect(self._settings_changed)
        name_row = QHBoxLayout()
        name_row.addWidget(self.name_edit, 1)
        name_row.addWidget(self.suggest_button)
        form = QFormLayout(box)
        form.addRow("Model name", name_row)
        form.addRow("", self.name_problem)
        self._ollama_form = form
        form.setRowVisible(self.name_problem, False)
        form.addRow("Quantize on register", self.quantize_combo)
        form.addRow("System prompt", self.system_edit)
        form.addRow("Context (num_ctx)", self.num_ctx)
        return box

    def _modelfile_box(self) -> QGroupBox:
        box = QGroupBox("Modelfile")
        self.modelfile = QPlainTextEdit()
        self.modelfile.setObjectName("modelfileEdit")
        self.modelfile.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.modelfile.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.modelfile.setPlaceholderText("The Modelfile appears here once a model is chosen.")
        self.modelfile.textChanged.connect(self._modelfile_edited)
        self.modelfile_state = muted_label("")
        self.reset_button = QPushButton("Reset")
        self.reset_button.setToolTip("Throw away your edits and generate the Modelfile from the settings again.")
        self.reset_button.clicked.connect(self.reset_modelfile)
        row = QHBoxLayout()
        row.addWidget(self.modelfile_state, 1)
        row.addWidget(self.reset_button)
        layout = QVBoxLayout(box)
        layout.addWidget(self.modelfile, 1)
        layout.addLayout(row)
        return box

    def _actions_row(self) -> QHBoxLayout:
        self.export_button = QPushButton("Export")
        self.export_button.setObjectName("exportButton")
        self.export_button.setToolTip("Write the GGUF and the Modelfile into the output folder.")
        self.export_button.clicked.connect(self.export)
        self.register_button = QPushButton("Register in Ollama")
        self.register_button.setObjectName("primary")
        self.register_button.setToolTip("Upload and create the model in Ollama (exporting first if needed), read it "
                                        "back, and check with a probe chat that it stops by itself.")
        self.register_button.clicked.connect(self.register)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        self.progress = QProgressBar()
        self.progress.setObjectName("exportProgress")
        self.progress.setTextVisible(True)
        self.progress.setVisible(False)
        self.phase = QLabel()
        self.phase.setProperty("muted", True)
        row = QHBoxLayout()
        for button in (self.export_button, self.register_button, self.cancel_button):
            button.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
            button.setMinimumWidth(110)
            row.addWidget(button)
        row.addWidget(self.progress, 1)
        row.addWidget(self.phase)
        row.addStretch(0)
        return row

    def _result_panel(self) -> QFrame:
        self.result = QFrame()
        self.result.setObjectName("exportResult")
        self.result_text = QLabel()
        self.result_text.setObjectName("exportResultText")
        self.result_text.setWordWrap(True)
        self.result_text.setTextFormat(Qt.TextFormat.RichText)
        self.result_text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.open_folder_button = QPushButton("Open folder")
        self.open_folder_button.clicked.connect(self._open_out_folder)
        self.chat_button = QPushButton("Chat with it")
        self.chat_button.setObjectName("chatWithIt")
        self.chat_button.clicked.connect(lambda: self.chat_requested.emit(self.last_outcome.name))
        self.details_button = QPushButton("Details…")
        self.details_button.clicked.connect(lambda: show_error(self, self.last_error))
        buttons = QVBoxLayout()
        for button in (self.chat_button, self.open_folder_button, self.details_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        layout = QHBoxLayout(self.result)
        layout.setContentsMargins(12, 8, 12, 8)
        layout.addWidget(self.result_text, 1)
        layout.addLayout(buttons)
        self.result.setVisible(False)
        return self.result

    # ---- source --------------------------------------------------------------------------------------
    def showEvent(self, event) -> None:  # noqa: N802 - Qt name
        super().showEvent(event)
        self.refresh_runs()           # a run may have finished since the page was last shown

    def refresh_runs(self) -> None:
        """List the runs that have something to export, newest first (nothing changes if they did not)."""
        items = [(f"{run.name}   ({run.status}, {run.config_summary()})", str(run.path))
                 for run in scan_runs(default_runs_dir()) if RunFolder(run.path).exportable()]
        items = items or [("No run with a final model or checkpoint yet", None)]
        shown = [(self.run_combo.itemText(i), self.run_combo.itemData(i)) for i in range(self.run_combo.count())]
        if self._loaded and items == shown:
            return
        self._loaded = True
        current = self.run_combo.currentData()
        self.run_combo.blockSignals(True)
        self.run_combo.clear()
        for text, data in items:
            self.run_combo.addItem(text, data)
        index = self.run_combo.findData(current)
        self.run_combo.setCurrentIndex(max(index, 0))
        self.run_combo.blockSignals(False)
        self._run_changed()

    def select_run(self, run_dir: str | Path, checkpoint: str = "final") -> None:
        self.from_run.setChecked(True)
        self.refresh_runs()
        index = self.run_combo.findData(str(Path(run_dir)))
        if index >= 0:
            self.run_combo.setCurrentIndex(index)
            self.checkpoint_combo.setCurrentIndex(max(self.checkpoint_combo.findText(checkpoint), 0))

    def select_folder(self, folder: str | Path) -> None:
        self.from_folder.setChecked(True)
        self.folder.set_text(str(folder))
        self._source_changed()

    def _source_kind_changed(self, _checked: bool) -> None:
        run = self.from_run.isChecked()
        for widget in (self.run_combo, self.refresh_runs_button, self.checkpoint_combo):
            widget.setEnabled(run)
        self.folder.setEnabled(not run)
        self._source_changed()

    def _run_changed(self, _index: int = 0) -> None:
        data = self.run_combo.currentData()
        choices = RunFolder(data).exportable() if data else []
        before = (self._shown_run, [self.checkpoint_combo.itemText(i) for i in range(self.checkpoint_combo.count())])
        if (data, choices) == before and self.source is not None:
            return                    # the same run with the same checkpoints: keep what was read and exported
        current = self.checkpoint_combo.currentText() if data == self._shown_run else ""
        self._shown_run = data
        self.checkpoint_combo.blockSignals(True)
        self.checkpoint_combo.clear()
        self.checkpoint_combo.addItems(choices)
        if current in choices:
            self.checkpoint_combo.setCurrentIndex(choices.index(current))
        self.checkpoint_combo.blockSignals(False)
        self._source_changed()

    def _source_changed(self) -> None:
        """Inspect the chosen folder in a worker: sizes per type, the name suggestion, the Modelfile."""
        run_dir, checkpoint, folder = self._chosen()
        self.source = None
        self.exported = None
        self.source_note.setStyleSheet("")
        if run_dir is None and folder is None:
            self.source_note.setText("Choose a run or a folder.")
            self._update_buttons()
            return
        self.source_note.setText("Reading the model folder…")
        self.runner.run("inspect", export_tasks.inspect_source, run_dir, checkpoint, folder, heavy=False,
                        on_done=self._source_ready, on_error=self._source_failed)
        self._update_buttons()

    def _chosen(self) -> tuple[Path | None, str, Path | None]:
        if self.from_run.isChecked():
            data = self.run_combo.currentData()
            checkpoint = self.checkpoint_combo.currentText()
            return (Path(data) if data and checkpoint else None), checkpoint, None
        text = self.folder.text()
        return None, "", (Path(text).expanduser() if text else None)

    def _source_ready(self, info: export_tasks.SourceInfo) -> None:
        self.source = info
        settings = info.export_settings
        for index, name in enumerate(GGUF_TYPE_NAMES):
            size = info.sizes.get(name)
            text = f"{name}   {human_bytes(size)}   {TYPE_HELP[name]}" if isinstance(size, int) else \
                f"{name}   cannot export: {size}"
            self.type_combo.setItemText(index, text)
            self.type_combo.setItemData(index, size if isinstance(size, str) else TYPE_HELP[name],
                                        Qt.ItemDataRole.ToolTipRole)
        if settings.get("type") in GGUF_TYPE_NAMES:
            self.type_combo.setCurrentIndex(GGUF_TYPE_NAMES.index(settings["type"]))
        if settings.get("quantize"):
            self.quantize_combo.setCurrentIndex(max(self.quantize_combo.findData(settings["quantize"]), 0))
        if settings.get("system") and not self.system_edit.toPlainText():
            self.system_edit.setPlainText(settings["system"])
        self._update_quantize_sizes()
        self.out_dir.line.setPlaceholderText(str(export_tasks.default_out_dir(info.run_dir, info.chosen)))
        if not self.name_edit.isModified() or not self.name_edit.text():
            self.name_edit.setText(settings.get("ollama_name") or export_tasks.suggest_name(info.base_name,
                                                                                          info.installed))
            self.name_edit.setModified(False)
        self.source_note.setText(f"{info.chosen}" + (f"  ·  trained context {info.trained_ctx}"
                                                     if info.trained_ctx else ""))
        self.regenerate_modelfile()
        self._update_buttons()

    def _source_failed(self, info: ErrorInfo) -> None:
        self.source_note.setText(info.message)
        self.source_note.setStyleSheet(f"color: {theme.current_colors().error};")
        self._update_buttons()

    # ---- settings ------------------------------------------------------------------------------------
    def gguf_type(self) -> str:
        return str(self.type_combo.currentData())

    def quantize(self) -> str | None:
        return self.quantize_combo.currentData() or None

    def name(self) -> str:
        return self.name_edit.text().strip()

    def out_folder(self) -> Path | None:
        if self.out_dir.text():
            return Path(self.out_dir.text()).expanduser()
        if self.source is None:
            return None
        return export_tasks.default_out_dir(self.source.run_dir, self.source.chosen)

    def suggest_name(self) -> None:
        if self.source is not None:
            self.name_edit.setText(export_tasks.suggest_name(self.source.base_name,
                                                             export_tasks.installed_model_names()))
            self._settings_changed()

    def _name_edited(self, _text: str) -> None:
        self._settings_changed()

    def _validate_name(self, _text: str = "") -> bool:
        try:
            validate_ollama_name(self.name())
        except DistillError as exc:
            self.name_problem.setText(exc.message)
            self._ollama_form.setRowVisible(self.name_problem, True)
            self.name_problem.setStyleSheet(f"color: {theme.current_colors().error};")
            theme.set_invalid(self.name_edit, True)
            self._update_buttons()
            return False
        self.name_problem.setText("")
        self._ollama_form.setRowVisible(self.name_problem, False)
        theme.set_invalid(self.name_edit, False)
        self._update_buttons()
        return True

    def _type_changed(self, _index: int) -> None:
        self._update_quantize_sizes()
        self._settings_changed()

    def _update_quantize_sizes(self) -> None:
        f16 = self.source.sizes.get("f16") if self.source else None
        for index in range(1, self.quantize_combo.count()):
            name = self.quantize_combo.itemData(index)
            size = f"   ≈ {human_bytes(export_tasks.quantized_size(f16, name))} in Ollama" \
                if isinstance(f16, int) else ""
            self.quantize_combo.setItemText(index, f"{name}{size}")
        if self.gguf_type() not in QUANTIZABLE_SOURCES and self.quantize():
            self.quantize_combo.setCurrentIndex(0)
        self.quantize_combo.setEnabled(self.gguf_type() in QUANTIZABLE_SOURCES)
        self.quantize_combo.setToolTip("Ask Ollama to quantize while registering." if self.quantize_combo.isEnabled()
                                       else "Ollama quantizes only f16 or bf16 files: choose one of them as type.")

    def _settings_changed(self) -> None:
        self._update_buttons()
        if not self._modelfile_is_edited():
            self._preview_timer.start()

    # ---- Modelfile -----------------------------------------------------------------------------------
    def regenerate_modelfile(self) -> None:
        """Build the Modelfile from the current settings (in a worker; it reads the tokenizer)."""
        if self.source is None or not self._validate_name():
            return
        self.runner.run("modelfile", export_tasks.preview_modelfile, self.source.model_dir, self.name(),
                        system=self.system_edit.toPlainText().strip() or None, num_ctx=self.num_ctx.value() or None,
                        heavy=False, on_done=self._modelfile_ready, on_error=self._modelfile_failed)

    def _modelfile_ready(self, spec: Any) -> None:
        self.generated_text = spec.text
        self.modelfile.blockSignals(True)
        self.modelfile.setPlainText(spec.text)
        self.modelfile.blockSignals(False)
        notes = [f"Generated from the model's chat template ({spec.family})." if spec.family else
                 "Generated; no TEMPLATE could be derived, Ollama will use the GGUF's chat template."]
        notes += spec.warnings
        self.modelfile_state.setText(" ".join(notes))
        self._update_buttons()

    def _modelfile_failed(self, info: ErrorInfo) -> None:
        self.modelfile_state.setText(f"Cannot generate the Modelfile: {info.message}")

    def _modelfile_is_edited(self) -> bool:
        return bool(self.generated_text) and self.modelfile.toPlainText() != self.generated_text

    def _modelfile_edited(self) -> None:
        if self._modelfile_is_edited():
            self.modelfile_state.setText("Edited by you: changing the settings no longer rewrites it. Reset "
                                         "generates it again. FROM is set to the exported file when writing.")
        self._update_buttons()

    def reset_modelfile(self) -> None:
        self.generated_text = ""
        self.regenerate_modelfile()

    # ---- export and register -------------------------------------------------------------------------
    def _export_key(self) -> tuple[Any, ...]:
        source = str(self.source.model_dir) if self.source else ""
        return (source, self.gguf_type(), self.name(), str(self.out_folder()))

    def _busy(self) -> bool:
        return self.runner.busy("export") or self.runner.busy("register")

    def export(self, *, then_register: bool = False) -> None:
        if self.source is None or self._busy() or not self._validate_name():
            return
        self.cancel_flag = export_tasks.CancelFlag()
        self._show_running("export", 0, None)
        self.runner.run("export", export_tasks.export_files, self.source.model_dir, self.out_folder(),
                        gguf_type=self.gguf_type(), name=self.name(), modelfile_text=self.modelfile.toPlainText(),
                        quantize=self.quantize(), cancel=self.cancel_flag, heavy=False,
                        on_progress=self._progress,
                        on_done=lambda files, key=self._export_key(): self._exported(files, key, then_register),
                        on_error=self._failed)
        self._update_buttons()

    def register(self) -> None:
        """Register the exported files; exports first when nothing matching the settings was exported."""
        if self.source is None or self._busy() or not self._validate_name():
            return
        if self.exported is None or self.exported[0] != self._export_key() or not self.exported[1].gguf_path.is_file():
            self.export(then_register=True)
            return
        files = self.exported[1]
        self.cancel_flag = export_tasks.CancelFlag()
        self._show_running("register-hash", 0, None)
        self.runner.run("register", export_tasks.register_files, self.name(), files.gguf_path,
                        self.modelfile.toPlainText(), quantize=self.quantize(), modelfile_path=files.modelfile_path,
                        cancel=self.cancel_flag, heavy=False, on_progress=self._progress, on_done=self._registered,
                        on_error=self._failed)
        self._update_buttons()

    def cancel(self) -> None:
        if self.cancel_flag is not None:
            self.cancel_flag.set()
            self.phase.setText("Cancelling…")

    def _progress(self, event: Any) -> None:
        self._show_running(event.phase, event.done, event.total, event.message)

    def _show_running(self, phase: str, done: float, total: float | None, message: str = "") -> None:
        self.progress.setVisible(True)
        if total:
            self.progress.setRange(0, 1000)
            self.progress.setValue(int(1000 * min(done / total, 1.0)))
            self.progress.setFormat(f"{human_bytes(done)} of {human_bytes(total)}" if total > 4096 else "%p%")
        else:
            self.progress.setRange(0, 0)          # busy: no size known for this phase
        self.phase.setText(PHASES.get(phase, message or phase))

    def _exported(self, files: export_tasks.ExportedFiles, key: tuple[Any, ...], then_register: bool) -> None:
        self.exported = (key, files)
        self._finish_running()
        warnings = "".join(f"<br>⚠ {w}" for w in files.warnings)
        self._show_result(True, f"<b>Exported</b> {files.gguf_path.name} ({human_bytes(files.size)}, "
                                f"{files.gguf_type}) and the Modelfile to {files.gguf_path.parent} in "
                                f"{human_duration(files.seconds)}.{warnings}", registered=False)
        self.status_text.emit(f"Exported {files.gguf_path}")
        if then_register:
            self.register()

    def _registered(self, outcome: export_tasks.RegisterOutcome) -> None:
        self.last_outcome = outcome
        self._finish_running()
        remember_registered(outcome.name, str(self.source.chosen) if self.source else "")
        checks = ["template read back as sent" if outcome.template_checked else "no TEMPLATE sent (the GGUF's own "
                  "chat template is used)"]
        if outcome.stops:
            checks.append(f"{len(outcome.stops)} stop string{'s' if len(outcome.stops) != 1 else ''} read back")
        reply = outcome.probe_reply[:120] + ("…" if len(outcome.probe_reply) > 120 else "")
        warnings = "".join(f"<br>⚠ {w}" for w in outcome.warnings)
        quant = f" Stored as {outcome.quantization}." if outcome.quantization else ""
        self._show_result(True, f"<b>Registered {outcome.name}</b> in Ollama at {outcome.host}.{quant}<br>Verified: "
                                f"{', '.join(checks)}; a probe chat stopped by itself in "
                                f"{outcome.probe_seconds:.1f} s: “{_html(reply)}”{warnings}", registered=True)
        self.registered.emit(outcome.name)
        self.status_text.emit(f"Registered {outcome.name} in Ollama")

    def _failed(self, info: ErrorInfo) -> None:
        self._finish_running()
        cancelled = info.message.startswith("Cancelled")
        self.last_error = info
        self._show_result(cancelled, _html(info.message), registered=False, details=bool(info.details),
                          neutral=cancelled)

    def _finish_running(self) -> None:
        self.progress.setVisible(False)
        self.phase.setText("")
        self.cancel_flag = None
        self._update_buttons()

    def _show_result(self, ok: bool, text: str, *, registered: bool, details: bool = False,
                     neutral: bool = False) -> None:
        colors = theme.current_colors()
        color = colors.border if neutral else colors.ok if ok else colors.error
        self.result.setStyleSheet(f"QFrame#exportResult {{ border: 1px solid {color}; border-left: 5px solid {color};"
                                  f" border-radius: 6px; background: {colors.surface}; }}")
        self.result_text.setText(text)
        self.result.setProperty("ok", ok)
        self.chat_button.setVisible(registered)
        self.open_folder_button.setVisible(self.exported is not None)
        self.details_button.setVisible(details)
        self.result.setVisible(True)

    def _open_out_folder(self) -> None:
        if self.exported is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.exported[1].gguf_path.parent)))

    def _update_buttons(self) -> None:
        busy = self._busy()
        ready = self.source is not None and bool(self.name()) and not self.name_problem.text() and \
            isinstance(self.source.sizes.get(self.gguf_type()), int) and bool(self.modelfile.toPlainText())
        self.export_button.setEnabled(ready and not busy)
        self.register_button.setEnabled(ready and not busy)
        self.cancel_button.setEnabled(busy)
        self.reset_button.setEnabled(self._modelfile_is_edited())

    def shutdown(self) -> None:
        """The window closes: cancel a running export (no partial file stays) and wait for it."""
        self.cancel()
        self.runner.wait_all(60_000)


def _html(text: str) -> str:
    import html

    return html.escape(text, quote=False).replace("\n", "<br>")
