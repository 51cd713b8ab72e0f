"""Post-training logic with no Dagster in it (report §3.3-3.5): the science behind SFT, RL with verifiable
rewards (AGAPO) and preference learning (GROUPER), importable and testable without an orchestrator.

Now: ``objectives`` (the AGAPO and GROUPER objectives as pure functions on torch tensors: zero-variance
filtering, leave-one-out group advantages, global normalization, the truncated-IS token-level loss, the
group-wise SimPER loss). Later: the chat format (template shipped with the tokenizer), the post-training
data, rollouts and verifiers.
"""
