"""The HTML report: self-contained, drifted features first, trends across runs, renders in headless Chromium."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import tempfile
import zlib
from datetime import timedelta
from pathlib import Path

import pytest

from harness import capturegen
from monitoring import monitor, report
from tests.test_monitoring_support import START, cars, features, make_baseline, monitor_args, predictions, run


def _runs(tmp: Path, mp: pytest.MonkeyPatch) -> Path:
    base = make_baseline(tmp, mp)
    frame = cars()
    for hour in range(3):
        f = frame.sample(300, replace=True, random_state=hour).reset_index(drop=True)
        if hour == 2:
            f["mileage"] = f["mileage"] * 2 + 15_000
        when = START + timedelta(hours=hour)
        capturegen.write_captures(tmp / "cap", features(f), predictions(f), when, spacing=timedelta(seconds=5))
        s, e = (when.strftime("%Y-%m-%dT%H:%M:%SZ"), (when + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"))
        out = tmp / "runs" / f"run{hour}"
        argv = monitor_args(tmp, tmp / "cap", base, out, "--start-time", s, "--end-time", e, "--bookmark", "Disabled")
        argv[argv.index("--report") + 1] = "Enabled"
        argv += ["--history-path", str(tmp / "runs"), "--sagemaker-endpoint-name", "car-prices"]
        assert run(monitor.main, argv, mp, tmp) == 0
    return tmp / "runs"


def test_pages_are_self_contained_and_put_drift_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = _runs(tmp_path, monkeypatch)
    page = (runs / "run2" / "report.html").read_text()
    assert not re.search(r"<(script|link|img|iframe)\b", page)
    assert not re.search(r"(src|href)=\"(https?:)?//", page) and "url(" not in page
    assert "What drifted" in page and "mileage" in page.split("What drifted")[1].split("</p>")[0]
    cards = re.findall(r'<div class="card( drift)?"><h3>([^<]+)</h3>', page)
    assert cards[0] == (" drift", "mileage")  # the drifted feature leads
    assert all(not flag for flag, _ in cards[1:])
    assert page.count("<svg") >= 2 * len(cards)  # a distribution and a trend per feature
    clean = (runs / "run0" / "report.html").read_text()
    assert "No violations" in clean
    index = report.write_site([runs], tmp_path / "site")
    html = index.read_text()
    assert html.count('href="runs/run-') == 3 and html.index("T12:00:00Z") < html.index("T10:00:00Z")


def _trend_points(page: str, feature: str) -> int:
    card = page.split(f"<h3>{feature}</h3>", 1)[1].split('<div class="card', 1)[0]
    return card.count("<circle")


def test_trends_follow_one_endpoint_or_batch_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = _runs(tmp_path, monkeypatch)
    summary = runs / "run1" / report.SUMMARY
    summary.write_text(summary.read_text().replace('"car-prices"', '"another-endpoint"'))
    site = tmp_path / "site"
    report.write_site([runs], site)
    pages = {p.read_text().split("<title>")[1].split("</title>")[0]: p.read_text() for p in site.glob("runs/*.html")}
    (last,) = [page for title, page in pages.items() if "car-prices" in title and "T12:00" in title]
    (other,) = [page for title, page in pages.items() if "another-endpoint" in title]
    assert _trend_points(last, "mileage") == 2  # run0 and run2: the other endpoint's run1 is not in its history
    assert _trend_points(other, "mileage") == 0  # its first run: no trend yet


def _chromium() -> str:
    """The browser's path; skipped without one, except in CI, where the report must be checked."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is required in CI to check the report renders")
        pytest.skip("chromium not installed")
    return exe


def test_report_renders_in_headless_chromium(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exe = _chromium()
    runs = _runs(tmp_path, monkeypatch)
    page = runs / "run2" / "report.html"
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
    ]
    with tempfile.TemporaryDirectory() as profile:
        shot = tmp_path / "report.png"
        subprocess.run(
            [
                exe,
                *flags,
                f"--user-data-dir={profile}",
                f"--screenshot={shot}",
                "--window-size=1280,2000",
                page.as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        dom = subprocess.run(
            [exe, *flags, f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    assert "What drifted" in dom and dom.count("<svg") >= 16 and "baseline_drift_check" in dom


def _screenshot(exe: str, page: Path, shot: Path, size: str) -> None:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run"]
    flags += ["--disable-background-networking", "--disable-component-update", "--disable-sync"]
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [exe, *flags, f"--user-data-dir={profile}", f"--screenshot={shot}", f"--window-size={size}", page.as_uri()],
            check=True,
            capture_output=True,
            timeout=120,
        )


def _png_rows(path: Path) -> tuple[int, int, list[bytes]]:
    """(width, height, rows of RGB bytes) of an 8-bit RGB or RGBA PNG, decoded with the standard library."""
    data = path.read_bytes()
    pos, idat, width, height, channels = 8, b"", 0, 0, 3
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, ctype = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and ctype in (2, 6)
            channels = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw, stride, rows, prev = zlib.decompress(idat), width * channels, [], bytearray(width * channels)
    for y in range(height):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b, c = prev[i], prev[i - channels] if i >= channels else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line[j] for k in range(0, stride, channels) for j in range(k, k + 3)))
        prev = line
    return width, height, rows


def test_report_fits_a_phone_screen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exe = _chromium()
    runs = _runs(tmp_path, monkeypatch)
    shot = Path(os.environ.get("REPORT_SHOT_DIR", tmp_path)) / "report-mobile.png"
    _screenshot(exe, runs / "run2" / "report.html", shot, "390,2600")
    width, height, rows = _png_rows(shot)
    assert width == 390
    # cards and tables keep the page's margin: nothing white reaches the right edge (it would be cut off)
    edge = [y for y in range(height) if rows[y][3 * (width - 3) : 3 * width] == b"\xff" * 9]
    assert edge == [], f"content reaches the right edge at rows {edge[:3]}..{edge[-3:]}"
    page = (runs / "run2" / "report.html").read_text()
    assert 'name="viewport"' in page


def test_drift_is_stated_once_with_its_threshold_and_verdict(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = _runs(tmp_path, monkeypatch)
    page = (runs / "run2" / "report.html").read_text()
    card = page.split("<h3>mileage</h3>", 1)[1].split('<div class="card', 1)[0]
    text = re.sub(r"<[^>]+>", "", card)
    assert re.search(r"driftBaseline drift distance [0-9.]+ exceeds threshold 0\.1", text)
    assert "distance " not in text.replace("drift distance", "").replace("L∞ distance", "")
    clean = (runs / "run0" / "report.html").read_text()
    card0 = re.sub(r"<[^>]+>", "", clean.split("<h3>mileage</h3>", 1)[1].split('<div class="card', 1)[0])
    assert "no driftBaseline drift distance 0 does not exceed threshold 0.1" in card0
    assert "one run so far; the line appears from the second run" in card0
