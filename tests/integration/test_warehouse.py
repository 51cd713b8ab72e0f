"""The DuckDB warehouse: schema, idempotent inserts, queries, two writer processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import duckdb
import pytest

from resources.warehouse import SCHEMA, Warehouse, WarehouseError


def test_schema_is_created_and_documented_tables_exist(tmp_path):
    wh = Warehouse(path=str(tmp_path / "w.duckdb"))
    wh.insert("metrics", [{"asset": "a", "version": "v", "metric": "loss", "value": 2.5, "step": 1}])
    tables = {r["table_name"] for r in wh.query("select table_name from information_schema.tables")}
    assert set(SCHEMA) <= tables


def test_replace_keys_make_reruns_idempotent(tmp_path):
    wh = Warehouse(path=str(tmp_path / "w.duckdb"))
    row = {"asset": "x", "version": "v1", "uri": "/a", "preset": "tiny"}
    wh.insert("artifacts", [row], replace_keys=("asset", "version"))
    wh.insert("artifacts", [{**row, "uri": "/b"}], replace_keys=("asset", "version"))
    assert wh.query("select uri from artifacts where asset = ?", ["x"]) == [{"uri": "/b"}]
    # without replace_keys the primary key refuses a duplicate
    with pytest.raises(duckdb.ConstraintException):
        wh.insert("artifacts", [row])


def test_unknown_table_and_missing_file_are_clear_errors(tmp_path):
    wh = Warehouse(path=str(tmp_path / "w.duckdb"))
    with pytest.raises(WarehouseError, match="unknown warehouse table 'nope'"):
        wh.insert("nope", [{"a": 1}])
    with pytest.raises(WarehouseError, match="does not exist yet"):
        wh.connect(read_only=True)


WRITER = textwrap.dedent("""
    import sys
    from resources.warehouse import Warehouse
    wh = Warehouse(path=sys.argv[1])
    for i in range(40):
        wh.insert("metrics", [{"asset": sys.argv[2], "version": "v", "step": i, "metric": "loss", "value": i}])
""")


def test_two_processes_write_without_losing_rows(tmp_path):
    path = str(tmp_path / "w.duckdb")
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, path, name]) for name in ("a", "b")]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    rows = Warehouse(path=path).query("select asset, count(*) as n from metrics group by asset order by asset")
    assert rows == [{"asset": "a", "n": 40}, {"asset": "b", "n": 40}]
