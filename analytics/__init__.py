"""Query-ready analytics tables: what each scoring run scored and what each monitoring run found, appended as
Parquet with Hive-style date partitions (``<root>/<table>/dt=YYYY-MM-DD/<run>.parquet``), for Athena in an account
and DuckDB on a laptop (``analytics.query``). Writing needs pyarrow only (the monitor image carries it); querying
locally needs duckdb (dev only).

Python API: ``analytics.append.append_scoring`` and ``analytics.append.append_monitoring``.
"""
