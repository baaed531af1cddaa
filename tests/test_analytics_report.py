"""The HTML report's trends from the analytics tables (``--tables``): a run folder alone has no history; with the
tables, each feature's drift and each quality metric trend over every run of that target the tables hold."""

from __future__ import annotations

import json
import shutil

import pytest

from analytics.append import append_monitoring
from monitoring import report
from tests.analytics_support import MainJob, main_job


@pytest.fixture(scope="module")
def job(tmp_path_factory) -> MainJob:
    return main_job(tmp_path_factory)


def _earlier_run(job: MainJob, name: str, dest, **changes):
    """The same target's run a day earlier (a copy of the real one with other numbers), appended to the tables."""
    run = dest / f"{name}-earlier"
    shutil.copytree(job.runs / name, run)
    doc = job.report(name)
    doc["completed_at"] = "2026-01-01" + doc["completed_at"][10:]
    doc["window"] = {k: v and "2026-01-01" + v[10:] for k, v in doc["window"].items()}
    for f in doc["features"]:
        f["drift"]["distance"] = changes.get("distance", f["drift"]["distance"])
    if "rmse" in changes:
        doc["model_quality"]["metrics"]["rmse"]["value"] = changes["rmse"]
    (run / "monitoring_report.json").write_text(json.dumps(doc))
    for extra in ("constraint_violations.json", "model_quality/constraint_violations.json"):
        if (run / extra).is_file():
            (run / extra).write_text('{"violations": []}')
    return run


def _page(site, job: MainJob, run: str) -> str:
    """The site's page for one of the job's runs, found by its target (page numbers follow completion times)."""
    heading = f"<h1>Model monitoring · {report._target(job.report(run))}</h1>"
    pages = [p.read_text() for p in sorted((site / "runs").glob("run-*.html"))]
    (page,) = [p for p in pages if heading in p]
    return page


def _card(page: str, title: str) -> str:
    (card,) = [c for c in page.split('<div class="card')[1:] if f"<h3>{title}</h3>" in c]
    return card


def test_trends_come_from_the_tables_when_given(job, tmp_path):
    tables = tmp_path / "tables"
    shutil.copytree(job.tables, tables)
    append_monitoring(tables, _earlier_run(job, "batch-drifted", tmp_path, distance=0.05))
    append_monitoring(tables, _earlier_run(job, "realtime-xgboost", tmp_path, rmse=2000.0))
    folders = [job.runs / "batch-drifted", job.runs / "realtime-xgboost"]

    alone = report.write_site(folders, tmp_path / "alone").parent
    page = _page(alone, job, "batch-drifted")
    assert "one run so far" in _card(page, "mileage")

    with_tables = report.write_site(folders, tmp_path / "with-tables", tables).parent
    page = _page(with_tables, job, "batch-drifted")
    card = _card(page, "mileage")
    assert "one run so far" not in card
    # two points, the earlier run's under the threshold, this run's over it
    assert card.count("<circle") == 2 and card.count(f'fill="{report.BAD_COLOR}"/>') == 1
    quality = _page(with_tables, job, "realtime-xgboost")
    assert _card(quality, "rmse over runs").count("<circle") == 2
    # the index still lists the run folders given, not the tables' history
    assert (with_tables / "index.html").read_text().count("<tr><td><a") == 2


def test_the_report_cli_takes_a_tables_root(job, tmp_path, capsys):
    out = tmp_path / "site"
    assert report.main(["--runs", str(job.runs), "--output", str(out), "--tables", str(job.tables)]) == 0
    assert (out / "index.html").is_file() and len(list((out / "runs").glob("*.html"))) == 4


def test_without_duckdb_tables_is_refused_in_one_line(job, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(report.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(SystemExit) as e:
        report.main(["--runs", str(job.runs), "--output", str(tmp_path / "site"), "--tables", str(job.tables)])
    assert e.value.code == 2
    assert "--tables reads the analytics tables with duckdb, which is not installed here" in capsys.readouterr().err
    assert not (tmp_path / "site").exists()
