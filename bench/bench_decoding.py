"""Windowed KV cache and MTP self-speculative decoding: ``python -m bench.bench_decoding``  (a measurement)

* Cache bytes: ``model.decoding.Decoder``'s windowed cache (bf16, one sequence, after a prefill of that
  length) on the tiny model against ``plan.kv_cache_bytes`` and against what Megatron's
  ``StaticInferenceContext`` (today's ``model.inference`` path) allocates (its element count x 2 bytes);
  the full preset by the plan's arithmetic only.
* On the newest trained tiny checkpoint (``.kexaone/artifacts/preference_checkpoint``), several prompts:
  tokens/s of plain greedy through ``model.inference.generate_batch`` and through ``greedy_generate``, and
  of ``speculative_generate`` k = 1, 2, 3, measured side by side (interleaved, median of repeats); the
  acceptance rate per draft position.
* A projection (not a measurement) of the full preset's speed-up from the measured acceptance and the draft
  cost by ``model.plan``'s FLOP arithmetic.

Writes the ``decoding`` section of docs/benchmarks.md.
"""

from __future__ import annotations

import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

from bench.report import markdown_table, write_section
from config import get_preset
from model.plan import GIB, kv_cache_bytes, layer_forward_flops_per_token

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / ".kexaone" / "artifacts"
LENGTHS = (64, 256, 1024, 4096)
FULL_LENGTHS = (4096, 32_768, 262_144)
NEW_TOKENS = 64
REPEATS = 3
PROMPTS = [
    "The history of the city begins with a small settlement on the river, where",
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return",
    "Photosynthesis is the process by which plants convert light into chemical energy. The first step",
    "In 1905 Albert Einstein published four papers that changed physics. The first of them",
    "Question: What is the capital of France?\nAnswer:",
    "To install the package, run the following command in a terminal:",
]


def cache_rows(model, preset) -> list[list]:
    from megatron.core.inference.contexts import StaticInferenceContext
    from megatron.core.inference.utils import InferenceMode

    from model.decoding import Decoder

    m = preset.model
    rows = []
    for length in LENGTHS:
        ids = torch.randint(0, preset.tokenizer.vocab_size, (1, length), generator=torch.Generator().manual_seed(0))
        dec = Decoder(model, 1, length, cache_dtype=torch.bfloat16)
        dec.prefill(ids)
        measured = dec.cache_bytes()
        context = StaticInferenceContext(1, length)
        with torch.no_grad(), InferenceMode.active():
            model(
                ids[:, :1],
                torch.zeros(1, 1, dtype=torch.long),
                None,
                inference_context=context,
                runtime_gather_output=True,
            )
        static_values = sum(k.numel() + v.numel() for k, v in context.key_value_memory_dict.values())
        plan_bytes, all_global = kv_cache_bytes(m, length), kv_cache_bytes(m, length, all_global=True)
        rows.append(
            [
                length,
                measured,
                plan_bytes,
                "yes" if measured == plan_bytes else "NO",
                static_values * 2,
                all_global,
                f"{measured / all_global:.3f}",
            ]
        )
    return rows


def full_preset_rows() -> list[list]:
    m = get_preset("k-exaone-236b").model
    rows = []
    for length in FULL_LENGTHS:
        hybrid, all_global = kv_cache_bytes(m, length), kv_cache_bytes(m, length, all_global=True)
        rows.append([length, f"{hybrid / GIB:.3f}", f"{all_global / GIB:.3f}", f"{hybrid / all_global:.3f}"])
    return rows


def newest_checkpoint() -> Path | None:
    found = sorted(ARTIFACTS.glob("preference_checkpoint/*/checkpoint"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def prompts(preset) -> tuple[list[list[int]], str]:
    found = sorted(ARTIFACTS.glob("superbpe_tokenizer/*/tokenizer.json"), key=lambda p: p.stat().st_mtime)
    if found:
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(found[-1]))
        return [tok.encode(text).ids for text in PROMPTS], f"{len(PROMPTS)} English/code text prompts"
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, preset.tokenizer.vocab_size, (len(PROMPTS), 24), generator=gen).tolist()
    return ids, f"{len(PROMPTS)} random-id prompts of 24 tokens (no tokenizer artifact found)"


def speed_rows(model, preset, prompt_ids: list[list[int]]):
    from model.decoding import greedy_generate, speculative_generate
    from model.inference import generate_batch

    vocab = preset.tokenizer.vocab_size
    methods = {
        "greedy, Megatron StaticInferenceContext (generate_batch)": lambda p: (
            generate_batch(model, [p], NEW_TOKENS, vocab_size=vocab)[0],
            None,
        ),
        "greedy, windowed cache (greedy_generate)": lambda p: (
            greedy_generate(model, [p], NEW_TOKENS, vocab_size=vocab)[0],
            None,
        ),
    }
    for k in (1, 2, 3):
        methods[f"speculative k={k}"] = lambda p, k=k: speculative_generate(
            model, p, NEW_TOKENS, num_draft_tokens=k, vocab_size=vocab
        )
    seconds = {name: [] for name in methods}
    tokens = {name: 0 for name in methods}
    stats = {name: [] for name in methods}
    identical = {name: 0 for name in methods}
    for prompt in prompt_ids:
        reference = None
        for rep in range(REPEATS + 1):  # first pass warms up
            for name, run in methods.items():
                start = time.perf_counter()
                ids, st = run(prompt)
                elapsed = time.perf_counter() - start
                if rep == 0:
                    reference = ids if reference is None else reference
                    identical[name] += ids == reference
                    tokens[name] += len(ids)
                    if st is not None:
                        stats[name].append(st)
                    continue
                seconds[name].append((elapsed, len(ids)))
    rows = []
    base = None
    for name in methods:
        # per prompt: median over repeats; tokens/s over all prompts
        per_prompt = [seconds[name][i : i + REPEATS] for i in range(0, len(seconds[name]), REPEATS)]
        total_time = sum(statistics.median(t for t, _ in chunk) for chunk in per_prompt)
        total_tokens = sum(chunk[0][1] for chunk in per_prompt)
        rate = total_tokens / total_time
        base = rate if base is None else base
        st = stats[name]
        if st:
            rounds = sum(s.rounds for s in st)
            accepted = sum(s.accepted for s in st)
            drafted = sum(s.drafted for s in st)
            forwards = sum(s.forwards for s in st)
            k = len(st[0].accepted_at)
            per_position = " / ".join(
                f"{sum(s.accepted_at[j] for s in st) / max(1, sum(s.verified_at[j] for s in st)):.2f}" for j in range(k)
            )
            extra = [f"{accepted / drafted:.3f}", per_position, f"{accepted / rounds + 1:.2f}", forwards]
        else:
            extra = ["", "", "1", ""]
        rows.append([name, f"{rate:.1f}", f"{rate / base:.2f}", f"{identical[name]}/{len(prompt_ids)}", *extra])
    return rows, stats


def projection_rows(stats) -> tuple[list[list], float]:
    """Full preset: draft cost c (one MTP step / one main forward, per token, FLOPs) and the expected
    speed-up E / (k c + 1), E the tokens per round (measured, and Leviathan's (1 - a^(k+1)) / (1 - a))."""
    m = get_preset("k-exaone-236b").model
    length = 32_768
    head = 2 * m.padded_vocab_size * m.hidden_size
    main = sum(layer_forward_flops_per_token(m, layer, length) for layer in range(m.num_layers)) + head
    # the MTP layer: eh_proj (2H -> H) + one dense sliding-window layer (layer 0 is one) + the shared head
    draft = 2 * 2 * m.hidden_size * m.hidden_size + layer_forward_flops_per_token(m, 0, length) + head
    c = draft / main
    k1 = stats.get("speculative k=1", [])
    alpha = sum(s.accepted for s in k1) / max(1, sum(s.drafted for s in k1))
    rows = []
    for k in (1, 2, 3):
        st = stats.get(f"speculative k={k}", [])
        measured_e = sum(s.accepted for s in st) / max(1, sum(s.rounds for s in st)) + 1
        formula_e = (1 - alpha ** (k + 1)) / (1 - alpha) if alpha < 1 else k + 1
        rows.append(
            [
                k,
                f"{measured_e:.2f}",
                f"{formula_e:.2f}",
                f"{measured_e / (k * c + 1):.2f}",
                f"{formula_e / (k * c + 1):.2f}",
            ]
        )
    return rows, c, alpha, main, draft


def main() -> None:
    from model import parallel
    from model.architecture import build_model
    from model.checkpoint import load_model

    warnings.filterwarnings("ignore")  # Megatron's notices about its CPU fallbacks
    torch.manual_seed(0)
    parallel.initialize()
    preset = get_preset("tiny")
    model = build_model(preset, vocab_size=preset.tokenizer.vocab_size)
    ckpt = newest_checkpoint()
    if ckpt is not None:
        load_model(ckpt, model)
        source = f"trained tiny checkpoint `{ckpt.relative_to(REPO)}`"
    else:
        source = "tiny model at random init (no trained checkpoint found)"
    model.eval()

    cache = cache_rows(model, preset)
    full = full_preset_rows()
    prompt_ids, prompt_note = prompts(preset)
    speed, stats = speed_rows(model, preset, prompt_ids)
    projection, c, alpha, main_flops, draft_flops = projection_rows(stats)

    body = "\n\n".join(
        [
            "KV cache of one sequence (bytes, bf16). *windowed* = `model.decoding.Decoder` after a prefill of "
            "that many tokens, allocated in bf16 and measured; *plan* = `plan.kv_cache_bytes`; *Megatron static* = "
            "the element count `StaticInferenceContext` allocates for the same length (every layer keeps every "
            "token) x 2 bytes; *all-global* = the plan's arithmetic if every layer were global.",
            markdown_table(
                ["tokens", "windowed (measured)", "plan", "equal", "Megatron static", "all-global", "windowed / all"],
                cache,
            ),
            "Full preset (`k-exaone-236b`, 48 layers, window 128, arithmetic only, GiB):",
            markdown_table(["tokens", "hybrid", "all-global", "ratio"], full),
            f"Decoding speed on the {source}, {prompt_note}, {NEW_TOKENS} new tokens each, batch 1, fp32 on CPU; "
            f"median of {REPEATS} interleaved repeats per prompt after a warm-up. *identical* = prompts whose ids "
            "equal the `generate_batch` output; *accept / position* = P(draft j accepted | verified); "
            "*tokens/round* = mean accepted + 1; *forwards* = main-model forwards over all prompts.",
            markdown_table(
                [
                    "method",
                    "tokens/s",
                    "vs generate_batch",
                    "identical",
                    "acceptance",
                    "accept / position",
                    "tokens/round",
                    "forwards",
                ],
                speed,
            ),
            "Projection for the full preset (an estimate, not a measurement): draft cost c = FLOPs of one MTP step "
            f"(eh_proj + one dense window layer + output head: {draft_flops / 1e9:.2f} GFLOP/token) over one main "
            f"forward (48 layers + head at 32K context: {main_flops / 1e9:.2f} GFLOP/token) = {c:.4f}; speed-up = "
            "E / (k c + 1), E = tokens per round, assuming decoding is bound by the per-forward cost so that "
            "verifying k + 1 tokens costs one forward (optimistic for the MoE layers, whose k + 1 tokens touch "
            f"more experts than one). Leviathan's E = (1 - a^(k+1)) / (1 - a) with a = {alpha:.3f} (k = 1's "
            "acceptance on the tiny checkpoint, whose MTP is far weaker than a full-scale one).",
            markdown_table(
                ["k", "E measured (tiny)", "E formula", "speed-up (E measured)", "speed-up (E formula)"], projection
            ),
        ]
    )
    write_section("decoding", "Windowed KV cache and MTP speculative decoding", "python -m bench.bench_decoding", body)


if __name__ == "__main__":
    sys.exit(main())
