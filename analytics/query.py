"""The analytics tables in DuckDB, on this machine: views named as the Athena tables over a local tables root
(``read_parquet('<root>/<table>/*/*.parquet', hive_partitioning = true)``), the named queries of queries.sql, and
the report's trend history. Host side only: duckdb is a dev dependency, never in an image.

    python -m analytics.query --tables ROOT                 # every named query
    python -m analytics.query --tables ROOT drift_alert_records
    python -m analytics.query --tables ROOT --sql "SELECT COUNT(*) FROM scored_records"
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from analytics.tables import (
    DRIFT_RESULTS,
    DRIFT_SCHEMA,
    MODEL_QUALITY,
    QUALITY_SCHEMA,
    SCORED_HEAD,
    SCORED_RECORDS,
    SCORED_TAIL,
    TABLES,
)

QUERIES_FILE = Path(__file__).with_name("queries.sql")
EMPTY = {
    SCORED_RECORDS: pa.schema([*SCORED_HEAD, *SCORED_TAIL]),
    DRIFT_RESULTS: DRIFT_SCHEMA,
    MODEL_QUALITY: QUALITY_SCHEMA,
}


@dataclass(frozen=True)
class Query:
    name: str
    description: str
    sql: str


def queries(path: Path = QUERIES_FILE) -> dict[str, Query]:
    """The named queries: each starts at ``-- name: <name>``, then ``--`` description lines, then the SQL."""
    out = {}
    for block in re.split(r"^-- name: ", path.read_text(), flags=re.M)[1:]:
        name, _, rest = block.partition("\n")
        lines = rest.strip().splitlines()
        desc = [line[2:].strip() for line in lines if line.startswith("--")]
        sql = "\n".join(line for line in lines if not line.startswith("--")).strip().rstrip(";")
        out[name.strip()] = Query(name.strip(), " ".join(desc), sql)
    return out


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def connect(root: Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with one view per table over ``root`` (an empty table when nothing was appended)."""
    con = duckdb.connect(":memory:")
    for table in TABLES:
        folder = Path(root) / table
        if any(folder.glob("dt=*/*.parquet")):
            pattern = _literal(str(folder / "*" / "*.parquet"))
            # dt stays a string, as the Athena partition column is; union_by_name: a retrained model may add a feature
            con.execute(
                f"CREATE VIEW {table} AS SELECT * FROM read_parquet({pattern}, hive_partitioning = true, "
                "hive_types = {'dt': 'VARCHAR'}, union_by_name = true)"
            )
        else:
            empty = EMPTY[table].empty_table().append_column("dt", pa.array([], pa.string()))
            con.register(f"_{table}_empty", empty)
            con.execute(f"CREATE VIEW {table} AS SELECT * FROM _{table}_empty")
    return con


def run(con: duckdb.DuckDBPyConnection, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    cur = con.execute(sql)
    return [d[0] for d in cur.description], cur.fetchall()


def run_named(con: duckdb.DuckDBPyConnection, name: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    return run(con, queries()[name].sql)


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}" if abs(v) < 1e6 else f"{v:.0f}"
    return "" if v is None else str(v)


def format_rows(columns: list[str], rows: list[tuple[Any, ...]]) -> str:
    """A plain-text table (what the README shows)."""
    cells = [columns, *[[_cell(v) for v in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m analytics.query", description=__doc__.split("\n")[0])
    p.add_argument("--tables", type=Path, required=True, help="the tables root (holds scored_records/, ...)")
    p.add_argument("--sql", help="run this SQL instead of named queries")
    p.add_argument("names", nargs="*", help="named queries of queries.sql (default: all)")
    args = p.parse_args(argv)
    con = connect(args.tables)
    if args.sql:
        print(format_rows(*run(con, args.sql)))
        return 0
    known = queries()
    unknown = [n for n in args.names if n not in known]
    if unknown:
        p.error(f"unknown queries {', '.join(unknown)}; known: {', '.join(known)}")
    for name in args.names or known:
        q = known[name]
        print(f"-- {name}: {q.description}")
        print(format_rows(*run(con, q.sql)))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())


def _iso(t: Any) -> str | None:
    return None if t is None else t.strftime("%Y-%m-%dT%H:%M:%SZ")


def trend_history(root: Path) -> list[dict[str, Any]]:
    """Every monitoring run in the tables, shaped as the parts of monitoring_report.json the report's trends read
    (target, window, completed_at, per-feature drift distance, model-quality values), oldest first."""
    con = connect(root)
    runs: dict[str, dict[str, Any]] = {}

    def run_of(run_id: str, target: str, target_type: str, start: Any, end: Any, at: Any) -> dict[str, Any]:
        if run_id not in runs:
            runs[run_id] = {
                "run_id": run_id,
                "endpoint": target if target_type == "endpoint" else None,
                "batch_job": target if target_type == "batch_job" else None,
                "window": {"start": _iso(start), "end": _iso(end)},
                "completed_at": _iso(at),
                "features": [],
            }
        return runs[run_id]

    head = "run_id, target, target_type, window_start, window_end, monitored_at"
    for *key, feature, distance in run(con, f"SELECT {head}, feature, distance FROM drift_results ORDER BY {head}")[1]:
        run_of(*key)["features"].append({"name": feature, "drift": {"distance": distance}})
    for *key, metric, value in run(con, f"SELECT {head}, metric, value FROM model_quality ORDER BY {head}")[1]:
        mq = run_of(*key).setdefault("model_quality", {"metrics": {}})
        mq["metrics"][metric] = {"value": value}
    return sorted(runs.values(), key=lambda r: (r["window"]["end"] or "") + (r["completed_at"] or ""))
