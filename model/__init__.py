"""The K-EXAONE block on Megatron-Core. The preset's ``model`` section (config/) is the
single source of its shape.

* ``plan``         parameters, FLOPs and KV cache of a preset, by arithmetic (no torch; ``kexaone plan``)
* ``architecture`` preset -> TransformerConfig -> layer specs -> GPTModel (``build_model``)
* ``cpu_compat``   the one module that lets Megatron-Core run without CUDA (applied only then);
                   ``python -m model.compat_probe`` reports which of its patches a Megatron release needs
* ``parallel``     torch.distributed + Megatron parallel state + seeds, idempotent
* ``training``     optimizer, WSD schedule and one training step (loss, MTP, expert-bias update)
* ``checkpoint``   save/load of model, optimizer, scheduler, data position and RNG (dist_checkpointing)
* ``inference``    greedy ``generate()``

Importing the package imports nothing heavy; each module imports torch/Megatron itself.
"""
