"""The real-time path: the endpoints the training pipeline deployed (their data capture on, as the endpoint config
says), the combiner Lambda's handler with API Gateway proxy events, and client traffic that
carries an InferenceId per record so ground truth can be merged later.

Why the labelled traffic goes to the endpoints directly: the combiner (serving/combiner.py) forwards no
InferenceId to the endpoints, so requests through it are captured without one; a client that wants its
predictions joined with ground truth calls InvokeEndpoint with ``InferenceId``, as done here.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from emulators.capture import INFERENCE_ID_HEADER
from lifecycle.data import Split, csv_line
from lifecycle.progress import StepFailed
from pipelines.local.execute import PREFIX
from serving import combiner

ENDPOINTS = {a: f"{PREFIX}-{a}" for a in ("xgboost", "linear")}  # what the training pipeline names them
DEMO_ROWS = 5
CLIENT_THREADS = 4


@dataclass
class Traffic:
    table: list[str] = field(default_factory=list)
    predictions: list[dict[str, float]] = field(default_factory=list)  # the combiner's, for the demo records
    combined_checked: int = 0
    requests: int = 0
    labelled: dict[str, str] = field(default_factory=dict)  # inference id -> label
    start: datetime | None = None
    end: datetime | None = None
    captured: dict[str, dict[str, int]] = field(default_factory=dict)


def count_captured(folder: Path) -> int:
    """Capture lines (one per sampled request) under an endpoint's capture folder."""
    return sum(len(p.read_bytes().splitlines()) for p in folder.rglob("*.jsonl"))


def _post(url: str, body: bytes, content_type: str, accept: str, inference_id: str | None = None) -> str:
    headers = {"Content-Type": content_type, "Accept": accept}
    if inference_id:
        headers[INFERENCE_ID_HEADER] = inference_id
    request = urllib.request.Request(url + "/invocations", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.read().decode()
    except urllib.error.HTTPError as e:
        raise StepFailed(f"{url} answered {e.code}: {e.read().decode(errors='replace').strip()[:200]}") from None
    except OSError as e:
        raise StepFailed(f"{url} unreachable: {e}") from None


def _combine(env: Mapping[str, str], body: str, content_type: str) -> list[dict[str, float]]:
    """One HTTP API (payload 2.0) event through the Lambda handler, configured by ``env`` as the template does."""
    event = {
        "version": "2.0",
        "routeKey": "POST /predict",
        "rawPath": "/predict",
        "headers": {"content-type": content_type, "accept": "application/json"},
        "requestContext": {"http": {"method": "POST", "path": "/predict"}, "requestId": str(uuid.uuid4())},
        "body": body,
        "isBase64Encoded": False,
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the handler reads its configuration from the environment, as in Lambda
    try:
        answer = combiner.handler(event, None)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    if answer["statusCode"] != 200:
        raise StepFailed(f"combiner answered {answer['statusCode']}: {json.loads(answer['body']).get('message')}")
    return json.loads(answer["body"])["predictions"]


def run(urls: Mapping[str, str], split: Split, rule: str, deployments: Mapping[str, str] | None = None) -> Traffic:
    """``urls``: the endpoints (their capturing proxies). Demo records through the combiner in CSV, JSON and JSON
    Lines; then every test record as a single-record request with its InferenceId to each endpoint, alternating
    CSV and JSON. ``deployments``: the SSM deployment records the combiner reads its endpoint names from, as
    deployed by the template (its calls then go through sagemaker-runtime); without them, the URLs."""
    if deployments:
        env = {"XGBOOST_DEPLOYMENT_PARAMETER": deployments["xgboost"], "LINEAR_DEPLOYMENT_PARAMETER":
               deployments["linear"], "COMBINE_RULE": rule}  # fmt: skip
    else:
        env = {"XGBOOST_ENDPOINT": urls["xgboost"], "LINEAR_ENDPOINT": urls["linear"], "COMBINE_RULE": rule}
    traffic = Traffic(start=datetime.now(UTC))
    demo_rows, demo_records = split.rows[:DEMO_ROWS], split.records()[:DEMO_ROWS]
    by_csv = _combine(env, "\n".join(csv_line(r) for r in demo_rows), "text/csv")
    by_json = _combine(env, json.dumps(demo_records), "application/json")
    by_jsonl = _combine(env, "\n".join(json.dumps(r) for r in demo_records), "application/jsonlines")
    traffic.requests += 3
    if not (by_csv == by_json == by_jsonl):
        raise StepFailed("the combiner's answers differ between CSV, JSON and JSON Lines for the same records")
    pick = {"max": max, "min": min}.get(rule)
    for p in by_csv:
        if pick and p["score"] != pick(p["xgboost"], p["linear"]):
            raise StepFailed(f"combined {p['score']} is not the {rule} of {p['xgboost']} and {p['linear']}")
        traffic.combined_checked += 1
    traffic.table = _table(split, demo_rows, by_csv, rule)
    traffic.predictions = by_csv

    jobs = []
    for i, (row, record, label) in enumerate(zip(split.rows, split.records(), split.labels, strict=True)):
        inference_id = f"test-{i + 1:04d}"
        traffic.labelled[inference_id] = label
        if i % 2 == 0:
            body, ctype, accept = csv_line(row).encode(), "text/csv", "text/csv"
        else:
            body, ctype, accept = json.dumps(record).encode(), "application/json", "application/json"
        jobs += [(url, body, ctype, accept, inference_id) for url in urls.values()]
    with ThreadPoolExecutor(CLIENT_THREADS) as pool:
        list(pool.map(lambda job: _post(*job), jobs))
    traffic.requests += len(jobs)
    traffic.end = datetime.now(UTC)
    return traffic


def _table(split: Split, rows: list[list[str]], predictions: list[dict[str, float]], rule: str) -> list[str]:
    names = split.names
    shown = ("make", "body_type", "mileage")
    idx = [names.index(n) for n in shown]
    head = f"{'make':<9}{'body_type':<12}{'mileage':>8}{'xgboost':>10}{'linear':>10}{rule:>10}"
    lines = [head]
    for row, p in zip(rows, predictions, strict=True):
        make, body, mileage = (row[i] for i in idx)
        lines.append(f"{make:<9}{body:<12}{mileage:>8}{p['xgboost']:>10,.0f}{p['linear']:>10,.0f}{p['score']:>10,.0f}")
    return lines
