"""[post_training] group (report §3.3-3.5): tool_use_tasks, rl_prompts, sft_data -> sft_checkpoint ->
rl_checkpoint (AGAPO) -> preference_checkpoint (GROUPER).

Each asset reads its inputs, calls the pure functions of ``posttrain`` and writes a version-addressed
artifact. The three checkpoints are launched through the same ``trainer`` resource (Pipes) as pre-training:
``sft_checkpoint`` runs ``model.train --stage sft`` on a packed mixture whose loss weights cover the
assistant's tokens only; the policy stages run ``posttrain.policy_train`` (rollouts, verifier rewards,
AGAPO / GROUPER updates, router frozen, resumable).
"""

import dataclasses
import json
from pathlib import Path

import numpy as np
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetDep,
    AssetExecutionContext,
    asset,
)

from assets import keys
from assets.context import read_niah
from assets.metadata import table
from assets.pretraining import PRETRAIN_SHOWS, planned_metadata, train_stage
from assets.synthetic import write_jsonl
from assets.tokenizer import TOKENIZER_FILE, eod_and_pad, load_tokenizer
from assets.versioning import BuildResult, Upstream, latest_upstream, materialize_versioned
from config import Preset, get_preset
from evaluation import niah
from kexaone_dag.automation import DOWNSTREAM_OF_DATA
from kexaone_dag.config import PresetResource
from kexaone_dag.executors import training_asset_kwargs
from model import data
from model.stages import SFT_STAGE
from posttrain import sft
from posttrain.launch import JUDGE_API_KEY_ENV, layout_problems
from resources.artifact_store import ArtifactStore
from resources.teacher import TeacherLLM
from resources.trainer import POLICY_MODULE, TrainerLauncher
from resources.warehouse import Warehouse

POST_TRAINING_GROUP = "post_training"
TASKS_FILE = "tasks.jsonl"
PROMPTS_FILE = "prompts.jsonl"
CONVERSATIONS_FILE = "conversations.jsonl"


def _read_jsonl(store: ArtifactStore, asset_name: str, version: str, name: str) -> list[dict]:
    with store.open(asset_name, version, name, "rb") as f:
        return [json.loads(line) for line in f.read().decode("utf-8").splitlines() if line.strip()]


def _teacher_upstream(teacher: TeacherLLM) -> Upstream:
    identity = teacher.identity()
    return Upstream(version=identity.replace(":", "-")[:64], uri=f"teacher:{identity}")


@asset(
    group_name=POST_TRAINING_GROUP,
    code_version="3",
    automation_condition=DOWNSTREAM_OF_DATA,
    description="Agentic tool-use tasks (report §3.3 stage ii): tool schemas (JSON Schema), a task, a reference "
    "solution and an executable pass criterion; every task is run in the sandbox and kept only when its "
    "reference passes and trivial answers fail (rejected tasks keep their reason).",
)
def tool_use_tasks(
    context: AssetExecutionContext,
    preset: PresetResource,
    artifact_store: ArtifactStore,
    warehouse: Warehouse,
    teacher: TeacherLLM,
):
    from posttrain import tool_tasks

    p = preset.get()
    t = p.posttrain.tool_tasks

    def build(staging: Path) -> BuildResult:
        if teacher.backend == "offline":  # programmatic tasks over the real tools
            tasks, unparsed = tool_tasks.programmatic_tasks(t.num_tasks, seed=p.pretrain.seed), []
        else:  # the teacher writes them (tool schemas in the prompt); its reply is parsed strictly
            s = p.synthetic
            client = teacher.client(max_tokens=s.teacher_max_tokens, temperature=s.teacher_temperature)
            tasks, unparsed = tool_tasks.teacher_tasks(client.complete_many, t.num_tasks, t.tasks_per_request)
        verdicts = tool_tasks.validate_tasks(tasks, timeout_s=t.sandbox_timeout_s, memory_mb=t.sandbox_memory_mb)
        by_id = {v.task_id: v for v in verdicts}
        kept = [tool_tasks.task_to_json(x) for x in tasks if by_id[x.id].kept]
        rejected = [{**tool_tasks.task_to_json(x), "reason": by_id[x.id].reason} for x in tasks if not by_id[x.id].kept]
        write_jsonl(staging / TASKS_FILE, kept)
        write_jsonl(staging / "rejected.jsonl", [*rejected, *unparsed])
        families: dict[str, list[int]] = {}
        for x in tasks:
            families.setdefault(x.family, [0, 0])[0 if by_id[x.id].kept else 1] += 1
        if unparsed:
            families["(teacher output not parsed)"] = [0, len(unparsed)]
        rows = [{"family": f, "kept": k, "rejected": r} for f, (k, r) in sorted(families.items())]
        if not kept:
            reasons = sorted({r["reason"] for r in [*rejected, *unparsed]})[:3]
            raise ValueError(f"tool_use_tasks: no task survived the checks ({len(tasks)} parsed); e.g. {reasons}")
        return BuildResult(
            metadata={
                "tasks": len(kept),
                "rejected": len(rejected) + len(unparsed),
                "backend": teacher.identity(),
            },
            tables={
                "families": table(
                    rows,
                    [
                        ("family", "string", "task family (tools used)"),
                        ("kept", "int", "tasks whose reference passes and trivial answers fail"),
                        ("rejected", "int", "tasks dropped, each with its reason in rejected.jsonl"),
                    ],
                )
            },
        )

    return materialize_versioned(
        context,
        store=artifact_store,
        warehouse=warehouse,
        preset=p,
        preset_sections=(
            "posttrain.tool_tasks",
            "pretrain.seed",
            "synthetic.teacher_max_tokens",
            "synthetic.teacher_temperature",
        ),
        upstream={"teacher": _teacher_upstream(teacher)},
        build=build,
    ).materialize_result()


@asset(
    group_name=POST_TRAINING_GROUP,
    deps=[AssetDep(keys.TOOL_USE_TASKS)],
    code_version="1",
    automation_condition=DOWNSTREAM_OF_DATA,
    kinds={"duckdb"},
    description="Prompts with verifiers for RL and evaluation: math with exact answers, code with unit tests "
    "(sandbox), instruction following with rule checks, tool tasks with their criteria; a held-out split "
    "(stable hash of the prompt id) that never reaches training.",
)
def rl_prompts(
    context: AssetExecutionContext,
    preset: PresetResource,
    artifact_store: ArtifactStore,
    warehouse: Warehouse,
):
    from posttrain import prompts, verifiers

    p = preset.get()
    pr = p.posttrain.prompts
    tasks_up = latest_upstream(context, keys.TOOL_USE_TASKS)
    tasks = _read_jsonl(artifact_store, keys.TOOL_USE_TASKS, tasks_up.version, TASKS_FILE)

    def build(staging: Path) -> BuildResult:
        records = prompts.build_prompts(
            pr.families,
            seed=p.pretrain.seed,
            held_out_fraction=pr.held_out_fraction,
            tool_tasks=tasks,
            arithmetic=prompts.ArithmeticParams(
                low=pr.arithmetic_range[0], high=pr.arithmetic_range[1], operations=tuple(pr.arithmetic_operations)
            ),
        )
        for r in records:  # every verifier spec checked before anything trains on it
            verifiers.validate_spec(r["verifier"])
        write_jsonl(staging / PROMPTS_FILE, records)
        counts: dict[tuple[str, str], int] = {}
        for r in records:
            counts[(r["domain"], r["split"])] = counts.get((r["domain"], r["split"]), 0) + 1
        rows = [
            {"domain": d, "train": counts.get((d, "train"), 0), "held_out": counts.get((d, "held_out"), 0)}
            for d in sorted({d for d, _ in counts})
        ]
        (staging / "splits.json").write_text(json.dumps(rows, indent=2))
        return BuildResult(
            metadata={
                "prompts": len(records),
                "held_out": sum(r["split"] == "held_out" for r in records),
            },
            tables={
                "splits": table(
                    rows,
                    [
                        ("domain", "string", "verifier domain"),
                        ("train", "int", "prompts RL trains on"),
                        ("held_out", "int", "prompts kept apart for post_training_eval"),
                    ],
                )
            },
        )

    result = materialize_versioned(
        context,
        store=artifact_store,
        warehouse=warehouse,
        preset=p,
        preset_sections=("posttrain.prompts", "pretrain.seed"),
        upstream={keys.TOOL_USE_TASKS: tasks_up},
        build=build,
    )
    rows = artifact_store.read_json(keys.RL_PROMPTS, result.ref.version, "splits.json")
    warehouse.insert(
        "rl_prompt_splits",
        [{"asset": keys.RL_PROMPTS, "version": result.ref.version, **r} for r in rows],
        replace_keys=("asset", "version"),
    )
    return result.materialize_result()


SFT_SOURCES = (keys.THINKING_AUGMENTED_DATA, keys.MULTILINGUAL_SYNTHETIC_DATA, keys.TOOL_USE_TASKS, keys.RL_PROMPTS)


def sft_conversations(p: Preset, store: ArtifactStore, versions: dict[str, str]) -> list[dict]:
    """Every SFT conversation of the preset from the upstream artifacts (train split of the RL prompts only)."""
    from posttrain import prompts, tool_tasks

    s = p.posttrain.sft
    thinking = _read_jsonl(store, keys.THINKING_AUGMENTED_DATA, versions[keys.THINKING_AUGMENTED_DATA], "samples.jsonl")
    multilingual = _read_jsonl(
        store, keys.MULTILINGUAL_SYNTHETIC_DATA, versions[keys.MULTILINGUAL_SYNTHETIC_DATA], "documents.jsonl"
    )
    tasks = _read_jsonl(store, keys.TOOL_USE_TASKS, versions[keys.TOOL_USE_TASKS], TASKS_FILE)
    records = _read_jsonl(store, keys.RL_PROMPTS, versions[keys.RL_PROMPTS], PROMPTS_FILE)
    convs = [
        *sft.thinking_conversations(thinking, s.reasoning_share),
        *sft.multilingual_conversations(multilingual),
        *sft.tagged(((t["id"], tool_tasks.transcript(tool_tasks.task_from_json(t))) for t in tasks), "tool"),
    ]
    convs = sft.cap_per_source(convs, s.max_conversations_per_source)
    for family, n in sorted(s.family_conversations.items()):
        train = [r for r in records if r.get("family", r["domain"]) == family and r["split"] == "train"][:n]
        for r in train:
            reasoning = prompts.unit_interval(f"{r['id']}/mode") < s.reasoning_share
            answer = prompts.reference_answer(r, reasoning=reasoning)
            convs.append(
                {
                    "id": f"{r['id']}/family",
                    "source": f"family:{family}",
                    "mode": "reasoning" if reasoning else "non_reasoning",
                    "messages": [*r["messages"], answer],
                }
            )
    return convs


MODE_COLUMNS = [
    ("source", "string", "where the conversations come from"),
    ("reasoning", "int", "conversations in reasoning mode (trajectory in the think block)"),
    ("non_reasoning", "int", "conversations answered directly (empty think block)"),
]


@asset(
    group_name=POST_TRAINING_GROUP,
    deps=[*(AssetDep(k) for k in SFT_SOURCES), AssetDep(keys.SUPERBPE_TOKENIZER)],
    code_version="1",
    automation_condition=DOWNSTREAM_OF_DATA,
    kinds={"duckdb"},
    description="SFT conversations in both modes (reasoning: the trajectory in the think block; non-reasoning: "
    "answered directly), from thinking, multilingual, tool-use data and the RL families' train split, in the "
    "chat format, packed with loss weights on the assistant's tokens only.",
)
def sft_data(
    context: AssetExecutionContext,
    preset: PresetResource,
    artifact_store: ArtifactStore,
    warehouse: Warehouse,
):
    from posttrain import chat

    p = preset.get()
    s = p.posttrain.sft
    upstream = {k: latest_upstream(context, k) for k in (*SFT_SOURCES, keys.SUPERBPE_TOKENIZER)}
    tok = load_tokenizer(artifact_store, upstream[keys.SUPERBPE_TOKENIZER].version)
    missing = [t for t in chat.CHAT_SPECIAL_TOKENS if tok.token_to_id(t) is None]
    if missing:
        raise ValueError(f"sft_data: the tokenizer lacks the chat tokens {missing} (tokenizer.special_tokens)")

    def build(staging: Path) -> BuildResult:
        convs = sft_conversations(p, artifact_store, {k: u.version for k, u in upstream.items()})
        eod, pad = eod_and_pad(tok, p)
        packed = sft.pack_conversations(
            convs,
            lambda text: tok.encode(text, add_special_tokens=False).ids,
            seq_length=s.seq_length,
            pad_id=pad,
            seed=p.pretrain.seed,
        )
        manifest = data.MixtureManifest(
            stage=SFT_STAGE,
            seq_length=s.seq_length,
            num_samples=len(packed.samples),
            seed=p.pretrain.seed,
            eod_id=eod,
            pad_id=pad,
            vocab_size=tok.get_vocab_size(with_added_tokens=True),
            sources=tuple(
                data.SourceStats(
                    name=src, weight=1.0, documents=sum(modes.values()), tokens=0, max_token_id=packed.max_token_id
                )
                for src, modes in packed.by_source.items()
            ),
            kind="packed",
            loss_weights=True,
        )
        data.write_packed_samples(staging, packed.samples, manifest, loss_weights=packed.loss_weights.astype(np.uint8))
        write_jsonl(staging / CONVERSATIONS_FILE, convs)
        rows = [
            {"source": src, "reasoning": m.get("reasoning", 0), "non_reasoning": m.get("non_reasoning", 0)}
            for src, m in packed.by_source.items()
        ]
        (staging / "modes.json").write_text(json.dumps(rows, indent=2))
        reasoning = sum(r["reasoning"] for r in rows)
        return BuildResult(
            metadata={
                "conversations": packed.conversations,
                "dropped_too_long": packed.dropped_too_long,
                "samples": len(packed.samples),
                "seq_length": s.seq_length,
                "tokens": packed.tokens,
                "trained_tokens": packed.trained_tokens,
                "trained_token_share": round(packed.trained_tokens / max(1, packed.tokens), 4),
                "padding_fraction": round(packed.padding_fraction, 4),
                "reasoning_share": round(reasoning / max(1, packed.conversations), 4),
            },
            tables={"mode_balance": table(rows, MODE_COLUMNS)},
        )

    result = materialize_versioned(
        context,
        store=artifact_store,
        warehouse=warehouse,
        preset=p,
        preset_sections=("posttrain.sft", "pretrain.seed", "tokenizer.special_tokens"),
        upstream=upstream,
        build=build,
    )
    rows = artifact_store.read_json(keys.SFT_DATA, result.ref.version, "modes.json")
    warehouse.insert(
        "sft_mode_balance",
        [{"asset": keys.SFT_DATA, "version": result.ref.version, **r} for r in rows],
        replace_keys=("asset", "version"),
    )
    return result.materialize_result()


SFT_SHOWS = (
    *PRETRAIN_SHOWS,
    "the loss covers the assistant's tokens only (sft_data's loss weights); both modes trained",
)


@asset(
    group_name=POST_TRAINING_GROUP,
    deps=[AssetDep(keys.SFT_DATA), AssetDep(keys.context_ext("stage2")), AssetDep(keys.SUPERBPE_TOKENIZER)],
    code_version="1",
    automation_condition=DOWNSTREAM_OF_DATA,
    **training_asset_kwargs(get_preset()),
    metadata=planned_metadata(get_preset(), SFT_STAGE, SFT_SHOWS),
    description="Supervised fine-tuning (report §3.3), continued from context_ext_stage2 through the same Pipes "
    "training job; loss on the assistant's tokens only, reasoning and non-reasoning modes.",
)
def sft_checkpoint(
    context: AssetExecutionContext,
    preset: PresetResource,
    artifact_store: ArtifactStore,
    warehouse: Warehouse,
    trainer: TrainerLauncher,
):
    p = preset.get()
    previous = keys.context_ext("stage2")
    upstream = {"mixture": latest_upstream(context, keys.SFT_DATA), "init": latest_upstream(context, previous)}
    with (
        artifact_store.local_copy(keys.SFT_DATA, upstream["mixture"].version) as mixture_dir,
        artifact_store.local_copy(previous, upstream["init"].version) as init,
    ):
        result, extra = train_stage(
            context,
            p,
            preset,
            artifact_store,
            warehouse,
            trainer,
            stage=SFT_STAGE,
            asset_name=keys.SFT_CHECKPOINT,
            sections=("model", "pretrain", "context", "posttrain.sft", "tokenizer.vocab_size"),
            upstream=upstream,
            mixture_dir=mixture_dir,
            init_from=init / "checkpoint",
            context_parallel=p.compute.sft_context_parallel,  # 32K packed conversations (the layout plan's CP)
        )
    return result.materialize_result(extra_metadata=extra)


def policy_asset(algorithm: str):
    """rl_checkpoint (AGAPO, from sft_checkpoint) or preference_checkpoint (GROUPER, from rl_checkpoint)."""
    name, previous, section = {
        "agapo": (keys.RL_CHECKPOINT, keys.SFT_CHECKPOINT, "posttrain.rl"),
        "grouper": (keys.PREFERENCE_CHECKPOINT, keys.RL_CHECKPOINT, "posttrain.preference"),
    }[algorithm]
    sections = (
        ("model", section, "posttrain.is_clip", "pretrain.seed", "tokenizer.vocab_size")
        if algorithm == "agapo"
        else ("model", section, "posttrain.rubric", "posttrain.rule_weight", "pretrain.seed", "tokenizer.vocab_size")
    )
    described = {
        "agapo": "AGAPO reinforcement learning with verifiable rewards (report §3.4), from sft_checkpoint: G "
        "rollouts per prompt (temperature 1.0, top-p 0.95, MTP off), verifier rewards, zero-variance filtering, "
        "leave-one-out and globally normalized advantages, truncated importance sampling, several updates per "
        "rollout batch; no KL, no reference model, the MoE router frozen.",
        "grouper": "GROUPER preference learning (report §3.5), from rl_checkpoint: G responses per prompt scored "
        "by rule rewards and the judge's rubric, standardized in the group and scaled into [-1, 1], the "
        "group-wise SimPER loss.",
    }[algorithm]

    @asset(
        name=name,
        group_name=POST_TRAINING_GROUP,
        deps=[AssetDep(keys.RL_PROMPTS), AssetDep(previous), AssetDep(keys.SUPERBPE_TOKENIZER)],
        code_version="2",
        automation_condition=DOWNSTREAM_OF_DATA,
        **training_asset_kwargs(get_preset()),
        description=described,
    )
    def _policy(
        context: AssetExecutionContext,
        preset: PresetResource,
        artifact_store: ArtifactStore,
        warehouse: Warehouse,
        trainer: TrainerLauncher,
        teacher: TeacherLLM,
    ):
        p = preset.get()
        nproc, tp, ep = trainer.layout(p, policy=True)
        world = nproc * trainer.node_count(p)
        if problems := layout_problems(p, algorithm, world, tp, ep):  # before any upstream is read
            raise ValueError(f"{name}: the trainer's layout cannot run the stage: {'; '.join(problems)}")
        if problems := teacher.problems():
            raise ValueError(f"{name}: the judge (teacher resource): {'; '.join(problems)}")
        judge, launch_env = None, None
        if teacher.backend == "http":  # the LLM judge: the teacher endpoint, its key through the environment
            judge = {"base_url": str(teacher.base_url), "model": str(teacher.model), "cache": str(teacher.cache_file())}
            launch_env = {JUDGE_API_KEY_ENV: str(teacher.api_key)}
        upstream = {
            "prompts": latest_upstream(context, keys.RL_PROMPTS),
            "init": latest_upstream(context, previous),
            "tokenizer": latest_upstream(context, keys.SUPERBPE_TOKENIZER),
            "judge": _teacher_upstream(teacher),  # another judge re-versions the checkpoint
        }
        with (
            artifact_store.local_copy(keys.RL_PROMPTS, upstream["prompts"].version) as prompts_dir,
            artifact_store.local_copy(previous, upstream["init"].version) as init,
            artifact_store.local_copy(keys.SUPERBPE_TOKENIZER, upstream["tokenizer"].version) as tokenizer_dir,
        ):
            result, extra = train_stage(
                context,
                p,
                preset,
                artifact_store,
                warehouse,
                trainer,
                stage=algorithm,
                asset_name=name,
                sections=sections,
                upstream=upstream,
                mixture_dir=prompts_dir,
                init_from=init / "checkpoint",
                tokenizer_file=tokenizer_dir / TOKENIZER_FILE,
                module=POLICY_MODULE,
                algorithm=algorithm,
                prompts_file=prompts_dir / PROMPTS_FILE,
                judge=judge,
                launch_env=launch_env,
            )
        return result.materialize_result(extra_metadata=extra)

    return _policy


rl_checkpoint = policy_asset("agapo")
preference_checkpoint = policy_asset("grouper")

posttrain_assets = [tool_use_tasks, rl_prompts, sft_data, sft_checkpoint, rl_checkpoint, preference_checkpoint]


EVAL_CHECKPOINTS = (keys.context_ext("stage2"), keys.SFT_CHECKPOINT, keys.RL_CHECKPOINT, keys.PREFERENCE_CHECKPOINT)
NIAH_SURVIVES = "niah_survives_post_training"
EVAL_FILE = "post_training_eval.json"


@asset(
    group_name=POST_TRAINING_GROUP,
    deps=[
        *(AssetDep(c) for c in EVAL_CHECKPOINTS),
        AssetDep(keys.RL_PROMPTS),
        AssetDep(keys.SUPERBPE_TOKENIZER),
        AssetDep(keys.DEDUPLICATED_CORPUS),
    ],
    code_version="3",
    automation_condition=DOWNSTREAM_OF_DATA,
    check_specs=[
        AssetCheckSpec(
            NIAH_SURVIVES,
            asset=keys.POST_TRAINING_EVAL,
            blocking=True,
            description="long context survives post-training: the final checkpoint's NIAH exact match on the "
            "stage-2 grid >= eval.niah_threshold in every cell",
        )
    ],
    **{k: v for k, v in training_asset_kwargs(get_preset(), launches_trainer=False).items() if k != "kinds"},
    kinds={"pytorch", "duckdb"},
    description="Base, SFT, RL and preference checkpoints side by side on the held-out prompts (report §4.1 "
    "decoding: temperature 1.0, top-p 0.95, MTP off): pass@1 averaged over k samples per domain in both modes, "
    "well-formed think blocks, response length; NIAH of the final checkpoint on the stage-2 grid (blocking).",
)
def post_training_eval(
    context: AssetExecutionContext,
    preset: PresetResource,
    artifact_store: ArtifactStore,
    warehouse: Warehouse,
    teacher: TeacherLLM,
):
    import torch
    from tokenizers import Tokenizer

    from assets.context import corpus_texts, niah_filler, niah_grid_table, previous_length
    from evaluation import posttrain_eval as pe
    from model import checkpoint as ckpt
    from model.architecture import build_model
    from model.inference import generate_batch
    from model.stages import NIAH_BATCH_TOKENS
    from posttrain import verifiers

    p = preset.get()
    pt, rl = p.posttrain, p.posttrain.rl
    if problems := teacher.problems():
        raise ValueError(f"post_training_eval: the judge (teacher resource): {'; '.join(problems)}")
    upstream = {c: latest_upstream(context, c) for c in EVAL_CHECKPOINTS}
    upstream["judge"] = _teacher_upstream(teacher)
    upstream["prompts"] = latest_upstream(context, keys.RL_PROMPTS)
    upstream["tokenizer"] = latest_upstream(context, keys.SUPERBPE_TOKENIZER)
    held_texts, corpus_up = corpus_texts(context, artifact_store, p, held_out=True)
    upstream.update({f"niah_filler_{k}": v for k, v in corpus_up.items()})
    final = EVAL_CHECKPOINTS[-1]

    def build(staging: Path) -> BuildResult:
        tok: Tokenizer = load_tokenizer(artifact_store, upstream["tokenizer"].version)
        eod, _ = eod_and_pad(tok, p)
        vocab = tok.get_vocab_size(with_added_tokens=True)
        records = pe.held_out(
            _read_jsonl(artifact_store, keys.RL_PROMPTS, upstream["prompts"].version, PROMPTS_FILE),
            pt.eval_max_prompts,
        )
        encode = lambda text: tok.encode(text, add_special_tokens=False).ids  # noqa: E731
        model = build_model(p, vocab_size=vocab)
        judge = (  # the rubric's judge: the teacher endpoint when it is an LLM, else the offline rule judge
            verifiers.TeacherJudge(teacher.client(max_tokens=pt.judge_max_tokens, temperature=pt.judge_temperature))
            if teacher.backend == "http"
            else verifiers.OfflineJudge()
        )
        rows: list[pe.EvalRow] = []
        for name in EVAL_CHECKPOINTS:
            with artifact_store.local_copy(name, upstream[name].version) as copy:
                ckpt.load_model(copy / "checkpoint", model)
            rows += pe.evaluate_model(
                model,
                name,
                records,
                tokenizer=tok,
                eos_token_id=eod,
                vocab_size=vocab,
                max_new_tokens=rl.max_response_tokens,
                temperature=rl.temperature,
                top_p=rl.top_p,
                k=pt.eval_samples,
                seed=p.pretrain.seed,
                judge=judge,
                rubric_dimensions=pt.rubric,
            )
            context.log.info(f"post_training_eval: {name} answered {len(records)} held-out prompts x 2 modes")
        # long context after post-training: the stage-2 NIAH grid, greedy (as the context stage's gate)
        cs = p.context.stages["stage2"]
        cases = niah.stage_cases(
            encode,
            niah_filler(p, held_texts),
            seq_length=cs.seq_length,
            previous_length=previous_length(p, "stage2"),
            num_lengths=p.eval.niah_num_lengths,
            num_depths=p.eval.niah_num_depths,
            trials=p.eval.niah_trials,
            seed=p.pretrain.seed,
        )

        def generate_many(prompts: list[list[int]]) -> list[str]:
            return [tok.decode(a) for a in generate_batch(model, prompts, niah.MAX_NEW_TOKENS, vocab_size=vocab)]

        results = niah.evaluate_batched(cases, generate_many, NIAH_BATCH_TOKENS)
        torch.set_grad_enabled(True)
        (staging / "niah.json").write_text(json.dumps([dataclasses.asdict(r) for r in results.cases], indent=2))
        (staging / EVAL_FILE).write_text(json.dumps([r.row() for r in rows], indent=2))
        pe.pass_at_1_png(rows, EVAL_CHECKPOINTS, staging / "pass_at_1.png")
        niah.heatmap_png(results, staging / "niah_heatmap.png", title=f"{final} NIAH", threshold=p.eval.niah_threshold)
        page = pe.comparison_markdown(rows, EVAL_CHECKPOINTS)
        (staging / "post_training_eval.md").write_text(page)
        return BuildResult(
            metadata={
                "held_out_prompts": len(records),
                "k": pt.eval_samples,
                "judge": judge.identity,
                "niah_accuracy": round(results.accuracy, 4),
            },
            markdown={"pass_at_1": page},
            tables={"pass_at_1": table([r.row() for r in rows], EVAL_COLUMNS), "niah_grid": niah_grid_table(results)},
            plots={"plot": "pass_at_1.png", "niah_heatmap": "niah_heatmap.png"},
        )

    result = materialize_versioned(
        context,
        store=artifact_store,
        warehouse=warehouse,
        preset=p,
        preset_sections=(
            "posttrain.eval_samples",
            "posttrain.eval_max_prompts",
            "posttrain.rl.max_response_tokens",
            "posttrain.rl.temperature",
            "posttrain.rl.top_p",
            "posttrain.rubric",
            "eval",
            "context.stages.stage2.seq_length",
            "pretrain.seed",
        ),
        upstream=upstream,
        build=build,
    )
    version = result.ref.version
    rows = artifact_store.read_json(keys.POST_TRAINING_EVAL, version, EVAL_FILE)
    warehouse.insert(
        "post_training_eval",
        [{"eval_version": version, "checkpoint_version": upstream[r["checkpoint"]].version, **r} for r in rows],
        replace_keys=("eval_version",),
    )
    results = read_niah(artifact_store, keys.POST_TRAINING_EVAL, version)
    passed, failing = niah.gate(results, p.eval.niah_threshold)
    check = AssetCheckResult(
        check_name=NIAH_SURVIVES,
        passed=passed,
        severity=AssetCheckSeverity.ERROR,
        description=niah.gate_message(failing, p.eval.niah_threshold),
        metadata={
            "checkpoint": final,
            "accuracy": round(results.accuracy, 4),
            "failing_cells": [c.describe() for c in failing],
        },
    )
    return result.materialize_result(check_results=[check])


EVAL_COLUMNS = [
    ("checkpoint", "string", "checkpoint evaluated"),
    ("domain", "string", "verifier domain of the held-out prompts"),
    ("mode", "string", "reasoning (think block) or non_reasoning"),
    ("prompts", "int", "held-out prompts"),
    ("samples", "int", "responses sampled (k per prompt)"),
    ("pass_at_1", "float", "share of samples whose verifier passes (pass@1 averaged over k)"),
    ("mean_score", "float", "mean verifier score (partial credit kept)"),
    ("think_well_formed", "float", "reasoning: one closed non-empty think block; direct: no trajectory"),
    ("mean_response_tokens", "float", "mean response length in tokens"),
    ("rubric_score", "float", "the judge's mean rubric score (posttrain.rubric), scaled to [0, 1]"),
]

posttrain_assets.append(post_training_eval)
