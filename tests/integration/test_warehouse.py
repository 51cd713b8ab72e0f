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


def test_a_warehouse_from_an_older_version_gains_the_new_columns(tmp_path):
    """post_training_eval gained rubric_score: a file written before it keeps its rows and takes new ones."""
    from resources.warehouse import _schema_columns

    path = tmp_path / "old.duckdb"
    old = SCHEMA["post_training_eval"].replace("rubric_score DOUBLE,", "")
    with duckdb.connect(str(path)) as con:
        con.execute(f"CREATE TABLE post_training_eval ({old})")
        con.execute(
            "INSERT INTO post_training_eval (eval_version, checkpoint, checkpoint_version, domain, mode, pass_at_1)"
            " VALUES ('v0', 'sft_checkpoint', 'c0', 'math', 'reasoning', 0.25)"
        )
    wh = Warehouse(path=str(path))
    row = {"eval_version": "v1", "checkpoint": "rl_checkpoint", "checkpoint_version": "c1", "domain": "math"}
    wh.insert("post_training_eval", [{**row, "mode": "reasoning", "pass_at_1": 0.5, "rubric_score": 0.75}])
    got = wh.query("select eval_version, pass_at_1, rubric_score from post_training_eval order by eval_version")
    assert got == [
        {"eval_version": "v0", "pass_at_1": 0.25, "rubric_score": None},
        {"eval_version": "v1", "pass_at_1": 0.5, "rubric_score": 0.75},
    ]
    for table, columns in SCHEMA.items():  # the parser reads every table's columns, no constraint as a column
        names = [c["name"] for c in wh.query(f"select name from pragma_table_info('{table}')")]
        assert [n for n, _ in _schema_columns(columns)] == names, table
