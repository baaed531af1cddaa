"""The monitoring report: one self-contained HTML page per run (inline SVG and CSS, nothing fetched) and an
index over runs. What drifted comes first; per feature the baseline and current distributions overlaid, the
drift distance against its threshold over the runs, completeness; for model quality the metric trend and
predicted against actual.

    python -m monitoring.report --runs monitoring/ [more folders] --output report/ [--tables ROOT]

Each run folder is a monitor output (it holds monitoring_report.json); the history is every run found, or, with
``--tables``, every run in the analytics tables (drift_results, model_quality, read with DuckDB on the host: the
monitor image does not carry duckdb and never needs ``--tables``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import sys
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

SUMMARY = "monitoring_report.json"
PAGE = "report.html"
BASE_COLOR = "#94a3b8"
CUR_COLOR = "#2563eb"
BAD_COLOR = "#dc2626"
OK_COLOR = "#16a34a"

CSS = """
*{box-sizing:border-box}body{margin:0;font:14px/1.45 -apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;
color:#0f172a;background:#f1f5f9}header{background:#0f172a;color:#f8fafc;padding:20px 32px}
header h1{margin:0 0 4px;font-size:22px;font-weight:600}header .meta{color:#cbd5e1;font-size:13px}
main{padding:20px 32px;max-width:1280px;margin:auto}h2{font-size:17px;margin:26px 0 10px}
.badge{display:inline-block;padding:3px 10px;border-radius:999px;font-weight:600;font-size:13px;margin-right:8px}
.bad{background:#fee2e2;color:#991b1b}.ok{background:#dcfce7;color:#166534}.warn{background:#fef3c7;color:#92400e}
.tiles{display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:12px}
.tile{background:#fff;border-radius:10px;padding:12px 14px;box-shadow:0 1px 2px rgba(0,0,0,.06)}
.tile .v{font-size:22px;font-weight:600}.tile .l{color:#64748b;font-size:12px;text-transform:uppercase}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(380px,1fr));gap:14px}
.card{background:#fff;border-radius:10px;padding:14px 16px;box-shadow:0 1px 2px rgba(0,0,0,.06);
border-top:4px solid #e2e8f0}.card.drift{border-top-color:#dc2626}.card h3{margin:0 0 2px;font-size:15px}
.card .sub{color:#64748b;font-size:12px;margin-bottom:6px}.row{display:flex;gap:12px;align-items:center}
table{border-collapse:collapse;width:100%;background:#fff;border-radius:10px;overflow:hidden;
box-shadow:0 1px 2px rgba(0,0,0,.06)}th,td{text-align:left;padding:7px 10px;border-bottom:1px solid #e2e8f0;
font-size:13px;vertical-align:top}th{background:#f8fafc;color:#475569;font-weight:600}
.legend span{display:inline-block;width:10px;height:10px;border-radius:2px;margin:0 4px 0 10px}
a{color:#1d4ed8}.muted{color:#64748b}code{font-size:12px}.note{font-size:12px;margin:4px 0}
.drift-line{flex-wrap:wrap;margin:4px 0}.drift-line .badge{margin:0}svg{max-width:100%;height:auto}
.scroll{overflow-x:auto}
@media (max-width:640px){header,main{padding:14px}.grid{grid-template-columns:minmax(0,1fr)}
.tiles{grid-template-columns:repeat(2,minmax(0,1fr))}td,th{padding:6px}}
"""


def _fmt(x: Any, digits: int = 4) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        if not math.isfinite(x):
            return "–"
        if abs(x) >= 1000:
            return f"{x:,.0f}"
        return f"{x:.{digits}g}"
    return escape(str(x))


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


# -- SVG ----------------------------------------------------------------------------------------------------
def svg_histogram(
    edges: Sequence[float], base: Sequence[float], cur: Sequence[float], w: int = 360, h: int = 130
) -> str:
    pad_l, pad_b, pad_t = 6, 18, 6
    top = max([*base, *cur, 1e-12])
    n = len(base)
    bw = (w - pad_l * 2) / n

    def y(v: float) -> float:
        return pad_t + (h - pad_b - pad_t) * (1 - v / top)

    bars = "".join(
        f'<rect x="{pad_l + i * bw + 1:.1f}" y="{y(v):.1f}" width="{bw - 2:.1f}" height="{h - pad_b - y(v):.1f}" '
        f'fill="{BASE_COLOR}" opacity=".55"/>'
        for i, v in enumerate(base)
    )
    pts = []
    for i, v in enumerate(cur):
        pts += [f"{pad_l + i * bw:.1f},{y(v):.1f}", f"{pad_l + (i + 1) * bw:.1f},{y(v):.1f}"]
    line = f'<polyline points="{" ".join(pts)}" fill="none" stroke="{CUR_COLOR}" stroke-width="2"/>'
    axis = f'<line x1="{pad_l}" y1="{h - pad_b}" x2="{w - pad_l}" y2="{h - pad_b}" stroke="#cbd5e1"/>'
    labels = (
        f'<text x="{pad_l}" y="{h - 4}" font-size="10" fill="#64748b">{_fmt(edges[0])}</text>'
        f'<text x="{w - pad_l}" y="{h - 4}" font-size="10" fill="#64748b" text-anchor="end">{_fmt(edges[-1])}</text>'
    )
    return f'<svg width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img">{bars}{line}{axis}{labels}</svg>'


def svg_categories(values: Sequence[str], base: Sequence[float], cur: Sequence[float], w: int = 360) -> str:
    values = list(values)[:12]
    row = 18
    h = row * len(values) + 6
    label_w = 96
    top = max([*base[: len(values)], *cur[: len(values)], 1e-12])
    span = w - label_w - 44
    parts = []
    for i, v in enumerate(values):
        y0 = 3 + i * row
        bwid, cwid = span * base[i] / top, span * cur[i] / top
        parts.append(
            f'<text x="{label_w - 6}" y="{y0 + 12}" font-size="11" text-anchor="end" fill="#334155">'
            f"{escape(v[:14])}</text>"
            f'<rect x="{label_w}" y="{y0 + 1}" width="{bwid:.1f}" height="7" fill="{BASE_COLOR}"/>'
            f'<rect x="{label_w}" y="{y0 + 8}" width="{cwid:.1f}" height="7" fill="{CUR_COLOR}"/>'
            f'<text x="{label_w + max(bwid, cwid) + 4:.1f}" y="{y0 + 13}" font-size="10" fill="#64748b">'
            f"{100 * cur[i]:.0f}%</text>"
        )
    return f'<svg width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img">{"".join(parts)}</svg>'


def svg_trend(
    series: Sequence[float | None], threshold: float | None, *, w: int = 360, h: int = 90, higher_is_bad: bool = True
) -> str:
    vals = [v for v in series if v is not None and math.isfinite(v)]
    if not vals:
        return '<span class="muted">no history</span>'
    lo = min([*vals, *([threshold] if threshold is not None else [])])
    hi = max([*vals, *([threshold] if threshold is not None else [])])
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0) * 0.1
    lo_pad = lo - (hi - lo) * 0.1
    pad = 8
    n = len(series)

    def x(i: int) -> float:
        return pad + (w - 2 * pad) * (i / max(n - 1, 1))

    def y(v: float) -> float:
        return pad + (h - 2 * pad) * (1 - (v - lo_pad) / (hi - lo_pad))

    parts = []
    if threshold is not None:
        ty = y(threshold)
        parts.append(
            f'<line x1="{pad}" y1="{ty:.1f}" x2="{w - pad}" y2="{ty:.1f}" stroke="{BAD_COLOR}" stroke-dasharray="4 3"/>'
            f'<text x="{w - pad}" y="{ty - 3 if ty > 16 else ty + 11:.1f}" font-size="10" fill="{BAD_COLOR}" '
            'text-anchor="end">'
            f"threshold {_fmt(threshold)}</text>"
        )
    pts = [(x(i), y(v), v) for i, v in enumerate(series) if v is not None and math.isfinite(v)]
    parts.append(
        f'<polyline points="{" ".join(f"{a:.1f},{b:.1f}" for a, b, _ in pts)}" fill="none" stroke="{CUR_COLOR}" '
        'stroke-width="2"/>'
    )
    for a, b, v in pts:
        bad = threshold is not None and ((v > threshold) if higher_is_bad else (v < threshold))
        parts.append(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="3.5" fill="{BAD_COLOR if bad else CUR_COLOR}"/>')
    return f'<svg width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img">{"".join(parts)}</svg>'


def svg_scatter(pairs: Sequence[Sequence[float]], w: int = 380, h: int = 300) -> str:
    pts = [(a, p) for a, p in pairs if math.isfinite(a) and math.isfinite(p)]
    if not pts:
        return '<span class="muted">no labelled predictions</span>'
    lo = min(min(a, p) for a, p in pts)
    hi = max(max(a, p) for a, p in pts)
    hi = hi if hi > lo else lo + 1
    pad = 36

    def sx(v: float) -> float:
        return pad + (w - pad - 10) * (v - lo) / (hi - lo)

    def sy(v: float) -> float:
        return h - pad - (h - pad - 10) * (v - lo) / (hi - lo)

    dots = "".join(
        f'<circle cx="{sx(a):.1f}" cy="{sy(p):.1f}" r="2.2" fill="{CUR_COLOR}" opacity=".45"/>' for a, p in pts
    )
    diag = (
        f'<line x1="{sx(lo):.1f}" y1="{sy(lo):.1f}" x2="{sx(hi):.1f}" y2="{sy(hi):.1f}" '
        'stroke="#0f172a" stroke-dasharray="4 3"/>'
    )
    axes = (
        f'<line x1="{pad}" y1="{h - pad}" x2="{w - 10}" y2="{h - pad}" stroke="#cbd5e1"/>'
        f'<line x1="{pad}" y1="10" x2="{pad}" y2="{h - pad}" stroke="#cbd5e1"/>'
        f'<text x="{(w + pad) / 2}" y="{h - 8}" font-size="11" text-anchor="middle" fill="#475569">actual</text>'
        f'<text x="12" y="{h / 2}" font-size="11" fill="#475569" transform="rotate(-90 12 {h / 2})" '
        'text-anchor="middle">predicted</text>'
        f'<text x="{pad}" y="{h - pad + 13}" font-size="10" fill="#64748b">{_fmt(lo)}</text>'
        f'<text x="{w - 10}" y="{h - pad + 13}" font-size="10" fill="#64748b" text-anchor="end">{_fmt(hi)}</text>'
    )
    return f'<svg width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img">{axes}{diag}{dots}</svg>'


# -- pages -----------------------------------------------------------------------------------------------------
def _target(s: dict[str, Any]) -> str:
    return s.get("endpoint") or s.get("batch_job") or "model"


def _when(s: dict[str, Any]) -> str:
    w = s.get("window") or {}
    if w.get("start") or w.get("end"):
        return f"{w.get('start') or '…'} → {w.get('end') or '…'}"
    return s.get("completed_at") or ""


def _same_target(history: Sequence[dict[str, Any]], s: dict[str, Any]) -> list[dict[str, Any]]:
    """Trends follow one endpoint or batch job: another target's runs are not this one's history."""
    return [h for h in history if _target(h) == _target(s)]


def _sort_key(s: dict[str, Any]) -> str:
    return ((s.get("window") or {}).get("end") or "") + (s.get("completed_at") or "")


def load_runs(folders: Sequence[Path]) -> list[tuple[Path, dict[str, Any]]]:
    runs = []
    for folder in folders:
        for path in sorted(Path(folder).rglob(SUMMARY)):
            try:
                doc = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            if doc.get("status") == "Completed":
                runs.append((path.parent, doc))
    runs.sort(key=lambda r: _sort_key(r[1]))
    return runs


def _violated(s: dict[str, Any]) -> dict[str, list[dict[str, str]]]:
    out: dict[str, list[dict[str, str]]] = {}
    for v in s.get("violations", []):
        out.setdefault(v["feature_name"], []).append(v)
    return out


def render_run(summary: dict[str, Any], history: Sequence[dict[str, Any]], index_href: str | None = None) -> str:
    violated = _violated(summary)
    mq = summary.get("model_quality") or {}
    n_viol = len(summary.get("violations", [])) + len(mq.get("violations", []))
    feats = summary.get("features", [])

    def severity(f: dict[str, Any]) -> tuple[int, float]:
        d = f.get("drift") or {}
        ratio = (d.get("distance") or 0) / (d.get("threshold") or 1)
        return (0 if f["name"] in violated else 1, -ratio)

    feats = sorted(feats, key=severity)
    badge = (
        f'<span class="badge bad">{n_viol} violations</span>'
        if n_viol
        else '<span class="badge ok">No violations</span>'
    )
    drifted = [f["name"] for f in feats if f["name"] in violated]
    head = (
        f"<header><h1>Model monitoring · {escape(_target(summary))}</h1>"
        f'<div class="meta">{badge} window {escape(_when(summary))} · schedule '
        f"{escape(str(summary.get('monitoring_schedule') or '–'))}"
        + (f' · <a style="color:#93c5fd" href="{escape(index_href)}">all runs</a>' if index_href else "")
        + "</div></header>"
    )
    tiles = [
        ("records", f"{summary.get('records', 0):,}"),
        ("features with violations", f"{len(drifted)} / {len(feats)}"),
        ("malformed lines", f"{(summary.get('malformed') or {}).get('count', 0):,}"),
        ("files read", f"{summary.get('files_read', 0):,}"),
        ("labelled records", f"{summary.get('labelled_records', 0):,}"),
    ]
    body = ['<main><div class="tiles">']
    body += [f'<div class="tile"><div class="v">{v}</div><div class="l">{escape(k)}</div></div>' for k, v in tiles]
    body.append("</div>")
    if drifted:
        body.append(
            f'<h2>What drifted</h2><p><span class="badge bad">{", ".join(escape(d) for d in drifted)}</span></p>'
        )
    else:
        body.append('<h2>What drifted</h2><p><span class="badge ok">Nothing</span> every check passed.</p>')

    body.append(
        '<h2>Features</h2><p class="legend muted">distribution: <span style="background:#94a3b8"></span>baseline'
        '<span style="background:#2563eb"></span>current · trend: drift distance per run against its threshold</p>'
    )
    body.append('<div class="grid">')
    for f in feats:
        body.append(_feature_card(f, violated.get(f["name"], []), history))
    body.append("</div>")

    if mq:
        body.append(_model_quality(mq, history))
    if summary.get("violations"):
        rows = "".join(
            f"<tr><td>{escape(v['feature_name'])}</td><td><code>{escape(v['constraint_check_type'])}</code></td>"
            f"<td>{escape(v['description'])}</td></tr>"
            for v in summary["violations"]
        )
        body.append(
            "<h2>Violations</h2><div class=scroll><table><tr><th>feature</th><th>check</th><th>description</th></tr>"
            f"{rows}</table></div>"
        )
    bad = summary.get("malformed") or {}
    if bad.get("count"):
        rows = "".join(
            f"<tr><td><code>{escape(str(e['file']))}</code></td><td>{_fmt(e['line'])}</td><td>{escape(e['reason'])}</td></tr>"
            for e in bad.get("examples", [])[:25]
        )
        body.append(
            f"<h2>Malformed input ({bad['count']:,} lines skipped)</h2>"
            f"<div class=scroll><table><tr><th>file</th><th>line</th><th>reason</th></tr>{rows}</table></div>"
        )
    body.append("</main>")
    return _page(f"Monitoring {_target(summary)} {_when(summary)}", head + "".join(body))


def _feature_card(f: dict[str, Any], violations: list[dict[str, str]], history: Sequence[dict[str, Any]]) -> str:
    d = f.get("drift") or {}
    name = f["name"]
    cls = "card drift" if violations else "card"
    sub = f"{escape(f['kind'])} · completeness {_pct(f.get('completeness'))}"
    if f.get("baseline_completeness") is not None:
        sub += f" (baseline {_pct(f['baseline_completeness'])})"
    dist = _drift_line(d) if d else ""
    chart = ""
    if f.get("histogram"):
        hgram = f["histogram"]
        chart = svg_histogram(hgram["edges"], hgram["baseline"], hgram["current"])
    elif f.get("categories"):
        c = f["categories"]
        chart = svg_categories(c["values"], c["baseline"], c["current"])
    series = []
    for run in history:
        match = next((x for x in run.get("features", []) if x["name"] == name), None)
        series.append(((match or {}).get("drift") or {}).get("distance"))
    trend = _trend(series, d.get("threshold")) if d else ""
    checks = "".join(f'<div class="badge bad">{escape(v["constraint_check_type"])}</div>' for v in violations)
    return f'<div class="{cls}"><h3>{escape(name)}</h3><div class="sub">{sub}</div>{checks}{dist}{chart}{trend}</div>'


def _drift_line(d: dict[str, Any]) -> str:
    """The compared statistic, its threshold and the verdict, once, in Model Monitor's words."""
    drifted = bool(d.get("drifted"))
    if d.get("method") == "ChiSquared":
        stat, rel = "Chi-squared p-value", "is below" if drifted else "is not below"
    else:
        stat, rel = "Baseline drift distance", "exceeds" if drifted else "does not exceed"
    verdict = '<span class="badge bad">drift</span>' if drifted else '<span class="badge ok">no drift</span>'
    line = (
        f'<div class="row drift-line">{verdict}<span>{stat} <b>{_fmt(d.get("distance"))}</b> {rel} threshold '
        f"<b>{_fmt(d.get('threshold'))}</b></span></div>"
    )
    if d.get("method") == "Robust" and d.get("simple") is not None:
        # how the compared number came about, so the L-inf distance is not read as a second verdict
        line += (
            f'<div class="muted note">Robust: the L∞ distance between the distributions, {_fmt(d["simple"])}, '
            "less 1.8·√((n+m)/nm) for sampling noise, floored at 0</div>"
        )
    return line


def _trend(series: Sequence[float | None], threshold: float | None, *, higher_is_bad: bool = True) -> str:
    points = [v for v in series if v is not None]
    if len(points) >= 2:
        return svg_trend(series, threshold, higher_is_bad=higher_is_bad)
    return '<p class="muted note">Trend over runs: one run so far; the line appears from the second run.</p>'


def _model_quality(mq: dict[str, Any], history: Sequence[dict[str, Any]]) -> str:
    cons = mq.get("constraints") or {}
    violated = {v["metric_name"] for v in mq.get("violations", [])}
    rows = []
    for m, v in (mq.get("metrics") or {}).items():
        c = cons.get(m) or {}
        state = '<span class="badge bad">violated</span>' if m in violated else '<span class="badge ok">ok</span>'
        rows.append(
            f"<tr><td>{escape(m)}</td><td>{_fmt(v.get('value'))}</td><td>{_fmt(v.get('standard_deviation'))}</td>"
            f"<td>{_fmt(c.get('threshold'))}</td><td>{escape(str(c.get('comparison_operator', '–')))}</td>"
            f"<td>{state}</td></tr>"
        )
    trends = []
    for m in ("rmse", "mae", "r2"):
        series = [(((r.get("model_quality") or {}).get("metrics") or {}).get(m) or {}).get("value") for r in history]
        threshold = (cons.get(m) or {}).get("threshold")
        chart = _trend(series, threshold, higher_is_bad=m != "r2")
        trends.append(f'<div class="card"><h3>{m} over runs</h3>{chart}</div>')
    return (
        f"<h2>Model quality ({mq.get('item_count', 0):,} labelled predictions)</h2>"
        "<div class=scroll><table><tr><th>metric</th><th>value</th><th>std dev</th><th>threshold</th>"
        "<th>operator</th><th></th></tr>"
        + "".join(rows)
        + '</table></div><div class="grid" style="margin-top:14px"><div class="card"><h3>predicted vs actual</h3>'
        + svg_scatter(mq.get("sample") or [])
        + "</div>"
        + "".join(trends)
        + "</div>"
    )


def render_index(runs: Sequence[tuple[str, dict[str, Any]]]) -> str:
    rows = []
    for href, s in reversed(runs):
        mq = s.get("model_quality") or {}
        n = len(s.get("violations", [])) + len(mq.get("violations", []))
        feats = sorted({v["feature_name"] for v in s.get("violations", [])})
        badge = f'<span class="badge bad">{n}</span>' if n else '<span class="badge ok">0</span>'
        rmse = ((mq.get("metrics") or {}).get("rmse") or {}).get("value")
        rows.append(
            f'<tr><td><a href="{escape(href)}">{escape(_when(s))}</a></td><td>{escape(_target(s))}</td>'
            f"<td>{s.get('records', 0):,}</td><td>{badge}</td><td>{escape(', '.join(feats)) or '–'}</td>"
            f"<td>{_fmt(rmse)}</td></tr>"
        )
    head = (
        f'<header><h1>Model monitoring · all runs</h1><div class="meta">{len(runs)} runs, newest first</div></header>'
    )
    table = (
        "<main><div class=scroll><table><tr><th>window</th><th>endpoint / batch job</th><th>records</th>"
        "<th>violations</th>"
        f"<th>features</th><th>rmse</th></tr>{''.join(rows)}</table></div></main>"
    )
    return _page("Model monitoring: all runs", head + table)


def _page(title: str, body: str) -> str:
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f'<meta name="viewport" content="width=device-width,initial-scale=1"><style>{CSS}</style></head>'
        f"<body>{body}</body></html>\n"
    )


def write_run_report(output: Path, history_dir: Path | None = None) -> Path:
    """report.html for the run in ``output``, with trends over the runs found under ``history_dir``."""
    summary = json.loads((output / SUMMARY).read_text())
    history = (
        [doc for folder, doc in load_runs([history_dir]) if folder.resolve() != output.resolve()] if history_dir else []
    )
    history = sorted(_same_target([*history, summary], summary), key=_sort_key)
    path = output / PAGE
    path.write_text(render_run(summary, history))
    return path


def _history_upto(tables_history: Sequence[dict[str, Any]], doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The tables' runs of ``doc``'s target up to ``doc`` (``doc`` itself from its folder, not twice)."""
    same = (_target(doc), doc.get("completed_at"))
    earlier = [
        h
        for h in _same_target(tables_history, doc)
        if _sort_key(h) <= _sort_key(doc) and (_target(h), h.get("completed_at")) != same
    ]
    return sorted([*earlier, doc], key=_sort_key)


def write_site(folders: Sequence[Path], out: Path, tables: Path | None = None) -> Path:
    """index.html + one page per run (``out/runs/<n>.html``), each with trends over its target's earlier runs:
    those among ``folders``, or with ``tables`` (an analytics tables root) those in the tables."""
    runs = load_runs(folders)
    out.mkdir(parents=True, exist_ok=True)
    (out / "runs").mkdir(exist_ok=True)
    history = [doc for _, doc in runs]
    tables_history = None
    if tables is not None:
        from analytics.query import trend_history  # duckdb: host side only

        tables_history = trend_history(tables)
    index_rows = []
    for i, (_, doc) in enumerate(runs):
        upto = _same_target(history[: i + 1], doc) if tables_history is None else _history_upto(tables_history, doc)
        name = f"runs/run-{i:04d}.html"
        (out / name).write_text(render_run(doc, upto, index_href="../index.html"))
        index_rows.append((name, doc))
    index = out / "index.html"
    index.write_text(render_index(index_rows))
    return index


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m monitoring.report", description=__doc__.split("\n")[0])
    p.add_argument("--runs", nargs="+", type=Path, required=True, help="folders holding monitor outputs")
    p.add_argument("--output", type=Path, required=True)
    p.add_argument("--tables", type=Path, help="trends from the analytics tables under this root (needs duckdb)")
    args = p.parse_args(argv)
    if args.tables is not None and importlib.util.find_spec("duckdb") is None:
        p.error("--tables reads the analytics tables with duckdb, which is not installed here (a host-side tool)")
    index = write_site(args.runs, args.output, args.tables)
    print(f"report: {index}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
