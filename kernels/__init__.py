"""Triton kernels with torch reference implementations (testable on CPU under ``TRITON_INTERPRET=1``).

* ``kernels.decode_attention``: one new token's attention over a KV cache that may be a ring buffer (masked by the
  stored positions; sliding window or global; GQA), split across programs for long caches.
* ``kernels.router``: the fused sigmoid top-k router with expert bias, equal to Megatron's
  ``topk_routing_with_score_function(score_function="sigmoid")``.

Each module has ``*_reference`` (plain torch, fp32 inside), ``*_triton`` (the kernel) and a dispatcher that runs
the kernel on CUDA tensors or when ``KEXAONE_KERNELS=triton`` and the reference otherwise. Why: decoding and
routing are memory-bound; a kernel reads its inputs once. Nothing here imports the orchestration
(``tests/unit/test_import_directions.py``); submodules load on demand so that ``import kernels`` needs no triton.
"""
