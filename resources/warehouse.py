"""DuckDB warehouse: one file that every asset writes its metrics into.

Schema (``SCHEMA`` below is the only definition; docs/storage.md "Warehouse" mirrors it):

* ``artifacts``         one row per committed artifact: asset, version, uri, code_version, preset,
                        git_commit, created_at.
* ``raw_corpus_stats``  per raw corpus source and version: files, documents, bytes, characters, formats.
* ``corpus_partition_stats`` per corpus partition artifact (filtered / deduplicated): docs and bytes in
                        and out, exclusions, language purity, dedup rate.
* ``corpus_filter_stats``   per partition artifact and pipeline step: docs and bytes in and out.
* ``corpus_rejections``     per partition artifact, step and reason: rejected docs and bytes.
* ``tokenizer_efficiency``  per tokenizer report, tokenizer and domain: held-out bytes per token and
                        superword usage.
* ``synthetic_balance``     per multilingual_synthetic_data version and target language: character
                        target, achieved characters, documents, rejections, teacher.
* ``mixture_composition``   per tokenized mixture and source: requested vs effective share, tokens, epochs.
* ``niah_results``      per context checkpoint, prompt length and needle depth: trials, correct, accuracy.
* ``short_context_perplexity`` per short_context_eval version, checkpoint and domain: held-out perplexity.
* ``rl_prompt_splits``  per rl_prompts version and domain: train and held-out prompts.
* ``sft_mode_balance``  per sft_data version and source: conversations in reasoning / non-reasoning mode.
* ``post_training_eval`` per evaluation, checkpoint, domain and mode: pass@1, mean score, well-formed think
                        blocks, response length.
* ``metrics``           long-format numbers from any asset (training curves, eval scores, filter
                        counts): asset, version, partition, step, metric, value, unit, recorded_at.

Later assets add their own tables to ``SCHEMA`` (training curves, NIAH grids, ...). DuckDB allows one
writing process at a time, so each call opens a short-lived connection and retries while another
process (a parallel step) holds the lock.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import duckdb
from dagster import ConfigurableResource

SCHEMA: dict[str, str] = {
    "artifacts": """
        asset VARCHAR NOT NULL,
        version VARCHAR NOT NULL,
        uri VARCHAR NOT NULL,
        code_version VARCHAR,
        preset VARCHAR,
        git_commit VARCHAR,
        created_at TIMESTAMPTZ DEFAULT now(),
        PRIMARY KEY (asset, version)
    """,
    "raw_corpus_stats": """
        source VARCHAR NOT NULL,          -- en, ko, es, de, ja, vi, code, stem
        source_version VARCHAR NOT NULL,  -- content-manifest hash (the source's data version)
        stats_version VARCHAR NOT NULL,   -- the raw_corpus_stats artifact version
        uri VARCHAR,
        files INTEGER,
        documents BIGINT,
        text_bytes BIGINT,
        characters BIGINT,
        mean_document_chars DOUBLE,
        formats VARCHAR,                  -- JSON: format -> file count
        PRIMARY KEY (source, stats_version)
    """,
    "corpus_partition_stats": """
        asset VARCHAR NOT NULL,           -- filtered_corpus | deduplicated_corpus
        partition VARCHAR NOT NULL,       -- en, ko, es, de, ja, vi, code, stem
        version VARCHAR NOT NULL,         -- the partition's artifact version (<asset>__<partition>/<version>)
        upstream_version VARCHAR,         -- raw source manifest (filtered) or filtered artifact (dedup)
        docs_in BIGINT,
        docs_out BIGINT,
        bytes_in BIGINT,
        bytes_out BIGINT,
        docs_excluded BIGINT,             -- documents in the exclusion output
        all_accounted_for BOOLEAN,        -- docs_in = docs_out + docs_excluded
        language_purity DOUBLE,           -- share of kept characters identified as the partition's language
        dedup_rate DOUBLE,                -- deduplicated_corpus: 1 - docs_out / docs_in
        exact_duplicates_removed BIGINT,
        near_duplicates_removed BIGINT,
        PRIMARY KEY (asset, partition, version)
    """,
    "corpus_filter_stats": """
        asset VARCHAR NOT NULL,
        partition VARCHAR NOT NULL,
        version VARCHAR NOT NULL,
        step_index INTEGER NOT NULL,      -- order in the chain (0 = read)
        step VARCHAR NOT NULL,            -- read, url, language_id, gopher_repetition, ..., exact_dedup, ...
        docs_in BIGINT,
        docs_out BIGINT,
        docs_dropped BIGINT,
        bytes_in BIGINT,
        bytes_out BIGINT,
        PRIMARY KEY (asset, partition, version, step)
    """,
    "corpus_rejections": """
        asset VARCHAR NOT NULL,
        partition VARCHAR NOT NULL,
        version VARCHAR NOT NULL,
        step VARCHAR NOT NULL,            -- the step that rejected (the exclusion folder)
        reason VARCHAR NOT NULL,          -- its reason, e.g. wrong_language, gopher_short_doc, near_duplicate
        documents BIGINT,
        bytes BIGINT,
        PRIMARY KEY (asset, partition, version, step, reason)
    """,
    "tokenizer_efficiency": """
        report_version VARCHAR NOT NULL,  -- the tokenizer_report artifact version
        tokenizer VARCHAR NOT NULL,       -- base | plain_bpe | superbpe
        domain VARCHAR NOT NULL,          -- en | ko | multilingual | stem | code (held-out documents)
        documents INTEGER,
        bytes BIGINT,
        bytes_per_token DOUBLE,           -- higher is better
        superword_token_share DOUBLE,     -- share of emitted tokens that are superwords
        PRIMARY KEY (report_version, tokenizer, domain)
    """,
    "synthetic_balance": """
        asset VARCHAR NOT NULL,           -- multilingual_synthetic_data
        version VARCHAR NOT NULL,         -- its artifact version
        language VARCHAR NOT NULL,        -- target language
        teacher VARCHAR,                  -- offline-programmatic-v1 | http:<model>
        target_chars BIGINT,              -- preset synthetic.multilingual_target_chars
        achieved_chars BIGINT,            -- characters of accepted synthetic documents
        achieved_share DOUBLE,            -- achieved / target
        documents INTEGER,
        rejected INTEGER,                 -- outputs rejected for this language (reason in rejected.jsonl)
        PRIMARY KEY (asset, version, language)
    """,
    "mixture_composition": """
        asset VARCHAR NOT NULL,           -- tokenized_mixture_stage{1,2,3}
        version VARCHAR NOT NULL,         -- its artifact version
        source VARCHAR NOT NULL,          -- corpus partition or synthetic set
        requested DOUBLE,                 -- preset share of the stage's samples
        effective DOUBLE,                 -- share of samples Megatron's blend actually draws
        documents BIGINT,
        tokens BIGINT,                    -- tokenized (incl. one EOD per document)
        samples BIGINT,                   -- samples of seq_length drawn from this source
        epochs DOUBLE,                    -- drawn tokens / available tokens
        PRIMARY KEY (asset, version, source)
    """,
    "niah_results": """
        checkpoint VARCHAR NOT NULL,      -- context_ext_stage1 | context_ext_stage2
        checkpoint_version VARCHAR NOT NULL,
        length INTEGER NOT NULL,          -- prompt tokens
        depth DOUBLE NOT NULL,            -- needle position, 0 = start of the haystack, 1 = just before the question
        trials INTEGER,
        correct INTEGER,
        accuracy DOUBLE,                  -- exact match, correct / trials
        PRIMARY KEY (checkpoint, checkpoint_version, length, depth)
    """,
    "short_context_perplexity": """
        eval_version VARCHAR NOT NULL,    -- the short_context_eval artifact version
        checkpoint VARCHAR NOT NULL,      -- pretrain_stage1..3, context_ext_stage1..2
        checkpoint_version VARCHAR NOT NULL,
        domain VARCHAR NOT NULL,          -- deduplicated_corpus partition (held-out documents)
        perplexity DOUBLE,
        tokens BIGINT,                    -- scored tokens
        PRIMARY KEY (eval_version, checkpoint, domain)
    """,
    "rl_prompt_splits": """
        asset VARCHAR NOT NULL,           -- rl_prompts
        version VARCHAR NOT NULL,
        domain VARCHAR NOT NULL,          -- math | code | instruction | tool
        train INTEGER,                    -- prompts RL trains on
        held_out INTEGER,                 -- prompts kept apart for post_training_eval
        PRIMARY KEY (asset, version, domain)
    """,
    "sft_mode_balance": """
        asset VARCHAR NOT NULL,           -- sft_data
        version VARCHAR NOT NULL,
        source VARCHAR NOT NULL,          -- thinking | multilingual | tool | family:<name>
        reasoning INTEGER,                -- conversations in reasoning mode (trajectory in the think block)
        non_reasoning INTEGER,            -- conversations answered directly
        PRIMARY KEY (asset, version, source)
    """,
    "post_training_eval": """
        eval_version VARCHAR NOT NULL,    -- the post_training_eval artifact version
        checkpoint VARCHAR NOT NULL,      -- context_ext_stage2 | sft_checkpoint | rl_checkpoint | preference_checkpoint
        checkpoint_version VARCHAR NOT NULL,
        domain VARCHAR NOT NULL,          -- verifier domain of the held-out prompts
        mode VARCHAR NOT NULL,            -- reasoning | non_reasoning
        prompts INTEGER,
        samples INTEGER,                  -- k per prompt
        pass_at_1 DOUBLE,                 -- share of samples whose verifier passes
        mean_score DOUBLE,                -- mean verifier score (partial credit kept)
        think_well_formed DOUBLE,         -- reasoning: one closed non-empty think block; direct: no think tag
        mean_response_tokens DOUBLE,
        rubric_score DOUBLE,              -- the judge's mean rubric score in [0, 1] (posttrain.rubric)
        PRIMARY KEY (eval_version, checkpoint, domain, mode)
    """,
    "metrics": """
        asset VARCHAR NOT NULL,
        version VARCHAR NOT NULL,
        partition VARCHAR,
        step BIGINT,
        metric VARCHAR NOT NULL,
        value DOUBLE,
        unit VARCHAR,
        recorded_at TIMESTAMPTZ DEFAULT now()
    """,
}


class WarehouseError(RuntimeError):
    pass


class Warehouse(ConfigurableResource):
    """A DuckDB file (default ``.kexaone/warehouse.duckdb``)."""

    path: str
    lock_timeout_s: float = 120.0

    def connect(self, read_only: bool = False) -> duckdb.DuckDBPyConnection:
        if not read_only:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        elif not Path(self.path).exists():
            raise WarehouseError(f"warehouse {self.path} does not exist yet (nothing has been materialized)")
        deadline = time.monotonic() + self.lock_timeout_s
        delay = 0.05
        while True:
            try:
                con = duckdb.connect(self.path, read_only=read_only)
                break
            except duckdb.IOException as exc:  # another process holds the write lock
                if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
        if not read_only:
            for table, columns in SCHEMA.items():
                con.execute(f"CREATE TABLE IF NOT EXISTS {table} ({columns})")
                _add_new_columns(con, table, columns)
        return con

    def insert(self, table: str, rows: Iterable[Mapping[str, Any]], *, replace_keys: Sequence[str] = ()) -> int:
        """Append rows. With ``replace_keys``, rows matching on those columns are replaced (idempotent
        re-runs of the same version write the same rows once)."""
        if table not in SCHEMA:
            raise WarehouseError(f"unknown warehouse table {table!r} (known: {', '.join(SCHEMA)})")
        rows = [dict(r) for r in rows]
        if not rows:
            return 0
        columns = list(rows[0])
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            if replace_keys:
                where = " AND ".join(f"{k} = ?" for k in replace_keys)
                for key in {tuple(r[k] for k in replace_keys) for r in rows}:
                    con.execute(f"DELETE FROM {table} WHERE {where}", list(key))
            placeholders = ", ".join("?" for _ in columns)
            con.executemany(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({placeholders})",
                [[r.get(c) for c in columns] for r in rows],
            )
            con.execute("COMMIT")
        return len(rows)

    def query(self, sql: str, params: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        """Run SQL and return rows as dicts, e.g. ``query("select * from artifacts")``."""
        with self.connect(read_only=Path(self.path).exists() and _is_read(sql)) as con:
            cur = con.execute(sql, list(params or []))
            names = [d[0] for d in cur.description] if cur.description else []
            return [dict(zip(names, row)) for row in cur.fetchall()]


def _schema_columns(columns: str) -> list[tuple[str, str]]:
    """(name, type) of each column line of a ``SCHEMA`` entry (constraint lines skipped)."""
    out = []
    for line in columns.splitlines():
        words = line.split("--")[0].replace(",", " ").split()
        if len(words) >= 2 and words[0].upper() not in ("PRIMARY", "UNIQUE", "FOREIGN", "CHECK"):
            out.append((words[0], words[1]))
    return out


def _add_new_columns(con: duckdb.DuckDBPyConnection, table: str, columns: str) -> None:
    """A warehouse written by an older version gains the columns added since (nullable, empty for its old
    rows): later code inserts into it instead of failing on a missing column."""
    have = {r[0] for r in con.execute(f"SELECT name FROM pragma_table_info('{table}')").fetchall()}
    for name, kind in _schema_columns(columns):
        if name not in have:
            con.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")


def _is_read(sql: str) -> bool:
    return sql.lstrip().split(None, 1)[0].lower() in ("select", "with", "describe", "show", "pragma")
