"""The main job's real-time step: serve both trained models locally, send real records in CSV and JSON, and show
each model's prediction and the combiner's answer.

    from serving.realtime_demo import run
    print(run({"xgboost": base_dir_xgb, "linear": base_dir_lin}, records))   # base dirs hold model/

Or from the command line: ``python -m serving.realtime_demo XGB_BASE_DIR LINEAR_BASE_DIR [CSV_WITH_HEADER]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.request
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from serving import combiner
from serving.local import REPO, LocalServer


def _post(url: str, body: str, content_type: str) -> str:
    request = urllib.request.Request(
        url + "/invocations", data=body.encode(), headers={"Content-Type": content_type, "Accept": "text/csv"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.read().decode()


def run(base_dirs: Mapping[str, str | Path], records: pd.DataFrame, rule: str = "max") -> str:
    """Start one server per model, query it directly in CSV and JSON, then through the combiner; return a report."""
    features = records.reset_index(drop=True)
    csv_body = features.to_csv(header=False, index=False)
    json_body = json.dumps(features.to_dict(orient="records"))
    servers = {m: LocalServer(m, d, workers=1) for m, d in base_dirs.items()}
    lines = []
    try:
        for name, server in servers.items():
            if server.start() != 200:
                raise RuntimeError(f"{name} server is not healthy:\n{server.log()}")
        for name, server in servers.items():
            by_csv = _post(server.url, csv_body, "text/csv").split("\n")
            by_json = _post(server.url, json_body, "application/json").split("\n")
            if by_csv != by_json:
                raise RuntimeError(f"{name}: CSV and JSON requests disagree: {by_csv} vs {by_json}")
            lines.append(f"{name:>8} at {server.url}: CSV and JSON requests agree ({len(by_csv)} records)")
        env = {"XGBOOST_ENDPOINT": servers["xgboost"].url, "LINEAR_ENDPOINT": servers["linear"].url}
        event = {
            "httpMethod": "POST",
            "headers": {"Content-Type": "application/json", "Accept": "application/json"},
            "body": json_body,
            "isBase64Encoded": False,
        }
        answer = combiner.combine(event, {**os.environ, **env, "COMBINE_RULE": rule})
        doc = json.loads(answer["body"])
    finally:
        for server in servers.values():
            server.stop()
    lines.append(f"combiner (COMBINE_RULE={doc['rule']}), one row per record:")
    lines.append(f"  {'make':<9}{'body_type':<12}{'mileage':>8}{'xgboost':>12}{'linear':>12}{'combined':>12}")
    for (_, rec), p in zip(features.iterrows(), doc["predictions"], strict=True):
        lines.append(
            f"  {rec['make']:<9}{rec['body_type']:<12}{rec['mileage']:>8}"
            f"{p['xgboost']:>12,.0f}{p['linear']:>12,.0f}{p['score']:>12,.0f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving.realtime_demo", description=__doc__.splitlines()[0])
    parser.add_argument("xgboost_base_dir", type=Path)
    parser.add_argument("linear_base_dir", type=Path)
    parser.add_argument("data", type=Path, nargs="?", default=REPO / "cardata" / "car_prices.csv")
    parser.add_argument("--rows", type=int, default=5)
    args = parser.parse_args(argv)
    frame = pd.read_csv(args.data)
    schema = json.loads((args.xgboost_base_dir / "model" / "schema.json").read_text())
    names = [f["name"] for f in schema["features"]]
    records = frame[names].sample(args.rows, random_state=0)
    print(run({"xgboost": args.xgboost_base_dir, "linear": args.linear_base_dir}, records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
