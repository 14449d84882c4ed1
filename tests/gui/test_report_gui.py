"""Runs page: a run's report.md shown with its plots; Write report evaluates in a worker and shows the result."""

from __future__ import annotations

from PySide6.QtCore import QUrl
from PySide6.QtGui import QTextDocument

from distill_gui.workflows.control import report_run

from .conftest import copy_run, wait_until


def _image_widths(view) -> dict[str, float]:
    widths, block = {}, view.document().begin()
    while block.isValid():
        it = block.begin()
        while not it.atEnd():
            fmt = it.fragment().charFormat()
            if fmt.isImageFormat():
                widths[fmt.toImageFormat().name()] = fmt.toImageFormat().width()
            it += 1
        block = block.next()
    return widths


def _select(page, name: str) -> None:
    rows = {page.table.item(r, 0).text(): r for r in range(page.table.rowCount())}
    page.table.selectRow(rows[name])


def test_the_report_of_a_run_is_shown_with_its_plots_at_the_views_width(window, engine_runs, tmp_path):
    runs_dir = tmp_path / "runs"
    finished = copy_run(engine_runs["finished-run"], runs_dir)
    report_run(finished)  # what the engine writes at the end of a run (off in the GUI tests' tiny runs)
    window.store.set("output_dir", str(runs_dir))
    window.show_page("Runs")
    page = window.runs_page
    _select(page, "finished-run")
    page.tabs.setCurrentWidget(page.report_view)
    text = page.report_view.toPlainText()
    assert "Report: finished-run" in text and "Held-out evaluation" in text and "Student after" in text
    widths = _image_widths(page.report_view)
    assert set(widths) == {"loss.png", "agreement.png", "before_after.png"}
    for name, width in widths.items():
        image = page.report_view.document().resource(QTextDocument.ResourceType.ImageResource, QUrl(name))
        assert image is not None and not image.isNull(), name  # the PNG was found and decoded
        assert 0 < width <= page.report_view.viewport().width()
    assert "Report" in page._details_html(page.selected_run())


def test_write_report_evaluates_in_a_worker_and_shows_the_new_report(window, qtbot, engine_runs, tmp_path):
    runs_dir = tmp_path / "runs"
    run = copy_run(engine_runs["stopped-run"], runs_dir, "no-report-run")
    assert not (run / "report.md").exists()
    window.store.set("output_dir", str(runs_dir))
    window.show_page("Runs")
    page = window.runs_page
    _select(page, "no-report-run")
    assert "has no report yet" in page.report_view.toPlainText()
    assert page.report_button.isEnabled()
    page.report_button.click()
    assert not page.report_button.isEnabled() and "Writing the report of no-report-run" in \
        page.report_view.toPlainText()
    wait_until(qtbot, lambda: not page.runner.busy("report"), 120, "the report task")
    assert (run / "report.md").is_file()
    assert page.tabs.currentWidget() is page.report_view and "Student after" in page.report_view.toPlainText()
    assert page.report_button.isEnabled() and page.selected_run().path == run
