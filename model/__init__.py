"""The K-EXAONE block on Megatron-Core: preset -> TransformerConfig/specs, training loop, CPU compat
layer, checkpoint I/O, inference. Filled by the model issue; the preset's ``model`` section is the
single source of its shape (kexaone_dag/presets.py)."""
