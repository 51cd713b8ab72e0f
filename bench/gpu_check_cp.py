"""The context-parallel row of ``bench.gpu_check``: ``torchrun --standalone --nproc-per-node=2 -m bench.gpu_check_cp``

Every rank runs ``model.training.compare_context_parallel`` (CP=1 then CP=2 on the same weights and batches, the
tiny model on TransformerEngine); rank 0 prints the result as one JSON line, the last line of its output, with a
one-line ``detail`` for the check's table.
"""

from __future__ import annotations

import json
import os

import torch


def main() -> None:
    from model.training import compare_context_parallel

    cp = int(os.environ.get("WORLD_SIZE", "2"))
    result = compare_context_parallel("tiny", context_parallel=cp, steps=3)
    result["detail"] = (
        f"CP={cp} vs CP=1, {result['steps']} steps of the tiny model: max |lm loss diff| "
        f"{result['max_lm_loss_diff']:.2e}, max relative grad-norm diff {result['max_grad_norm_rel_diff']:.2e} "
        f"(limit {result['tolerance']:g})"
    )
    if torch.distributed.get_rank() == 0:
        print(json.dumps(result, default=str), flush=True)
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
