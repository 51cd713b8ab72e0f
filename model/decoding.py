"""Windowed KV-cache decoding and MTP self-speculative decoding on the Megatron ``GPTModel``.

What: ``greedy_generate`` (same output as ``model.inference.generate_batch``) and ``speculative_generate``
(the MTP layer drafts ``num_draft_tokens`` tokens, the main model verifies them in one forward), both on
a cache that keeps only what attention can still see.

Semantics. ``Decoder`` runs the model's own modules (embedding, each layer's norms, ``linear_qkv`` with
the QK norms, Megatron's rotary table and ``apply_rotary_pos_emb``, ``linear_proj``, the dense or MoE MLP,
the bias-dropout-add, the final norm, the output layer) and replaces only attention and its cache. Per
layer: K/V tensors ``[B, Hkv, capacity, D]`` and ``key_positions [B, capacity]`` (-1 = empty). A
sliding-window layer holds exactly ``sliding_window`` slots, a ring (position p lives in slot p % window);
a global layer holds every position. A forward of n new tokens attends over concat(cache, new keys) under
a mask of absolute positions (causal; window: key in (q - window, q]) and returns the new K/V; ``commit``
writes only the first n of them (speculative rejection never reaches the cache). One new token that is
committed anyway is written first and read through ``decode_attention`` (the ring slot it overwrites
is already out of its window). The MoE layers route through ``kernels.router`` (the fused sigmoid router)
while ``greedy_generate`` / ``speculative_generate`` run.

The MTP block as Megatron computes it (``multi_token_prediction.py``): row i takes the main model's
hidden state h_i *after* the decoder's final norm, ``hnorm``'d, and the embedding of token i+1,
``enorm``'d, concatenated as [embedding, hidden] into ``eh_proj``; then its transformer layer (numbered 1:
sliding window, RoPE at position i, the same positions as the main model's row i), its own final norm,
and the shared output layer: logits for token i+2. For more than one draft the one layer is applied again
to its own output (after its final norm, as Megatron's repeated MTP layer passes it on, and as vLLM / SGLang
draft DeepSeek / EXAONE MTP). Rows whose inputs are verified are committed to the MTP layer's own windowed
cache; recursive draft rows only ever sit in the pending part of the attention.

Why: the hybrid stack needs ``sliding_window`` keys on three of every four layers, yet Megatron's
``StaticInferenceContext`` keeps the whole sequence everywhere (``plan.kv_cache_bytes`` is the arithmetic
this cache meets); and the MTP layer the model is trained with is a cheap draft model (report §4.1 turns it
off for evaluation; here it only proposes, the main model decides, so greedy output is unchanged and
sampling keeps the target distribution by the Leviathan / Chen acceptance rule).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn.functional as F

from kernels.decode_attention import decode_attention  # the Triton kernel on GPU, its torch reference on CPU

PREFILL_CHUNK = 256  # prompt tokens per forward: bounds the [chunk, cache + chunk] score matrix


@dataclass
class LayerCache:
    """K/V of one attention layer: ``[B, Hkv, capacity, D]`` and ``positions [B, capacity]`` (-1 empty)."""

    k: torch.Tensor
    v: torch.Tensor
    positions: torch.Tensor
    window: int | None  # None: global layer (slot = position); else ring of `window` slots

    @classmethod
    def empty(cls, batch: int, heads: int, capacity: int, dim: int, window: int | None, dtype, device) -> LayerCache:
        slots = capacity if window is None else window
        return cls(
            torch.zeros(batch, heads, slots, dim, dtype=dtype, device=device),
            torch.zeros(batch, heads, slots, dim, dtype=dtype, device=device),
            torch.full((batch, slots), -1, dtype=torch.long, device=device),
            window,
        )

    def write(self, k: torch.Tensor, v: torch.Tensor, positions: torch.Tensor) -> None:
        """k/v [B, Hkv, n, D] at positions [B, n]; a ring keeps only the last ``window`` of them."""
        if self.window is not None and k.shape[2] > self.window:
            k, v, positions = k[:, :, -self.window :], v[:, :, -self.window :], positions[:, -self.window :]
        slots = positions if self.window is None else positions % self.window
        if int(slots.max()) >= self.positions.shape[1]:
            raise ValueError(f"position {int(positions.max())} beyond the cache capacity {self.positions.shape[1]}")
        index = slots.view(slots.shape[0], 1, -1, 1).expand(-1, k.shape[1], -1, k.shape[3])
        self.k.scatter_(2, index, k.to(self.k.dtype))
        self.v.scatter_(2, index, v.to(self.v.dtype))
        self.positions.scatter_(1, slots, positions)

    def clone(self) -> LayerCache:
        return LayerCache(self.k.clone(), self.v.clone(), self.positions.clone(), self.window)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.k, self.v))


@dataclass
class Pending:
    """New tokens' K/V per layer from a forward, not yet in the cache (``Decoder.commit`` writes them)."""

    kv: list[tuple[torch.Tensor, torch.Tensor]]
    positions: torch.Tensor  # [B, n]


def _attention_layout(attn) -> tuple[int | None, bool, float]:
    """(window in tokens or None, applies RoPE, softmax scale) of a Megatron attention module, read the way
    Megatron reads them (1-indexed layer number; ``window_size=(w-1, 0)`` means w tokens incl. the query)."""
    from megatron.core.transformer.utils import is_layer_window_attention

    config = attn.config
    windowed = config.window_size is not None and is_layer_window_attention(
        config.window_size, config.window_attn_skip_freq, attn.layer_number
    )
    if windowed and config.window_size[1] != 0:
        raise ValueError(f"only causal windows are supported (window_size={config.window_size})")
    window = config.window_size[0] + 1 if windowed else None
    no_rope = bool(config.no_rope_freq[attn.layer_number - 1]) if config.no_rope_freq else False
    return window, not no_rope, float(attn.core_attention.softmax_scale)


class Decoder:
    """The model's forward over new tokens with per-layer windowed caches (see module doc).

    ``main`` caches every decoder layer; ``mtp`` the MTP layer (when the model has one). ``capacity`` is the
    largest position + 1 a global layer will hold. ``cache_dtype`` (default the model's) may be bf16 to
    compare the bytes with ``plan.kv_cache_bytes``; attention then reads the rounded keys.
    """

    def __init__(self, model, batch: int, capacity: int, *, cache_dtype: torch.dtype | None = None):
        self.model = model
        self.batch, self.capacity = batch, capacity
        param = next(model.parameters())
        self.device, self.dtype = param.device, param.dtype
        cache_dtype = cache_dtype or param.dtype
        config = model.config
        self.kv_heads, self.head_dim = config.num_query_groups or config.num_attention_heads, config.kv_channels
        self.rope = model.rotary_pos_emb(capacity)  # [capacity, 1, 1, D] (Megatron's table)
        self.layers = list(model.decoder.layers)
        self.layouts = [_attention_layout(layer.self_attention) for layer in self.layers]
        self.main = [self._empty(w, cache_dtype) for w, _, _ in self.layouts]
        self.mtp_layer = model.mtp.layers[0] if getattr(model, "mtp", None) is not None else None
        if self.mtp_layer is not None:
            self.mtp_layout = _attention_layout(self.mtp_layer.mtp_model_layer.self_attention)
            self.mtp = self._empty(self.mtp_layout[0], cache_dtype)

    def _empty(self, window: int | None, dtype) -> LayerCache:
        return LayerCache.empty(self.batch, self.kv_heads, self.capacity, self.head_dim, window, dtype, self.device)

    # ---- attention ----------------------------------------------------------------------------------

    def _attention_block(
        self,
        layer,
        layout,
        cache: LayerCache,
        hidden: torch.Tensor,
        positions: torch.Tensor,
        extra: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None,
        write: bool,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """``TransformerLayer._forward_attention`` with this cache. hidden [n, B, H], positions [B, n];
        ``extra`` = (k, v, positions) of tentative earlier tokens (MTP drafts) attended but never cached.
        Returns the hidden state after the attention residual and the new tokens' (k, v) [B, Hkv, n, D]."""
        from megatron.core.models.common.embeddings.rope_utils import apply_rotary_pos_emb

        window, rope, scale = layout
        attn = layer.self_attention
        normed = layer.input_layernorm(hidden)
        q, k, v = attn.get_query_key_value_tensors(normed, None)  # [n, B, heads, D], QK norms applied
        if rope:
            freqs = self.rope[positions.t(), 0]  # [n, B, 1, D]
            mscale = getattr(attn, "_yarn_concentration_factor", 1.0)
            q = apply_rotary_pos_emb(q, freqs, config=attn.config, mscale=mscale)
            k = apply_rotary_pos_emb(k, freqs, config=attn.config, mscale=mscale)
        q, k, v = (t.permute(1, 2, 0, 3) for t in (q, k, v))  # [B, heads, n, D]
        n = q.shape[2]
        if n == 1 and write and extra is None:
            cache.write(k, v, positions)
            k_cache, v_cache = cache.k.to(q.dtype), cache.v.to(q.dtype)  # no copy when the dtypes agree
            out = decode_attention(
                q[:, :, 0], k_cache, v_cache, cache.positions, positions[:, 0], window=window, scale=scale
            ).unsqueeze(2)
        else:
            new_k, new_v, new_pos = k, v, positions
            if extra is not None:
                new_k, new_v = torch.cat([extra[0], k], dim=2), torch.cat([extra[1], v], dim=2)
                new_pos = torch.cat([extra[2], positions], dim=1)
            out = _attend(q, cache, new_k, new_v, new_pos, positions, window, scale)
            if write:
                cache.write(k, v, positions)
        context = out.permute(2, 0, 1, 3).reshape(n, self.batch, -1)
        projected = attn.linear_proj(context)
        hidden = layer.self_attn_bda(layer.training, layer.config.bias_dropout_fusion)(
            projected, hidden, layer.hidden_dropout
        )
        return hidden, (k, v)

    @staticmethod
    def _mlp_block(layer, hidden: torch.Tensor) -> torch.Tensor:
        """``TransformerLayer._forward_mlp``: pre-MLP norm, dense MLP or MoELayer, bias-dropout-add."""
        out = layer.mlp(layer.pre_mlp_layernorm(hidden), padding_mask=None)
        return layer.mlp_bda(layer.training, layer.config.bias_dropout_fusion)(out, hidden, layer.hidden_dropout)

    # ---- main model ---------------------------------------------------------------------------------

    @torch.no_grad()
    def forward(self, tokens: torch.Tensor, positions: torch.Tensor, *, write: bool = True):
        """tokens, positions [B, n] -> (logits [B, n, V], hidden [n, B, H] after the final norm, Pending).
        ``write=False`` leaves the cache as it was (``commit`` the accepted prefix later)."""
        hidden = self.model.embedding(input_ids=tokens, position_ids=positions)
        new_kv = []
        for layer, layout, cache in zip(self.layers, self.layouts, self.main):
            hidden, kv = self._attention_block(layer, layout, cache, hidden, positions, None, write)
            hidden = self._mlp_block(layer, hidden)
            new_kv.append(kv)
        hidden = self.model.decoder.final_layernorm(hidden)
        return self._logits(hidden), hidden, Pending(new_kv, positions)

    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        logits, _ = self.model.output_layer(hidden, weight=None, runtime_gather_output=True)
        return logits.transpose(0, 1)

    def commit(self, pending: Pending, n: int) -> None:
        """Write the first ``n`` tokens of a ``write=False`` forward into the main caches."""
        if n <= 0:
            return
        for cache, (k, v) in zip(self.main, pending.kv):
            cache.write(k[:, :, :n], v[:, :, :n], pending.positions[:, :n])

    @torch.no_grad()
    def prefill(self, tokens: torch.Tensor, chunk: int = PREFILL_CHUNK):
        """The prompt [B, L] at positions 0..L-1 in chunks (written): (logits [B, L, V], hidden [L, B, H])."""
        logits, hidden = [], []
        for start in range(0, tokens.shape[1], chunk):
            piece = tokens[:, start : start + chunk]
            pos = torch.arange(start, start + piece.shape[1], device=self.device).expand(self.batch, -1)
            lg, hd, _ = self.forward(piece, pos)
            logits.append(lg)
            hidden.append(hd)
        return torch.cat(logits, dim=1), torch.cat(hidden, dim=0)

    # ---- MTP ----------------------------------------------------------------------------------------

    @torch.no_grad()
    def mtp_forward(
        self,
        hidden: torch.Tensor,
        next_tokens: torch.Tensor,
        positions: torch.Tensor,
        *,
        write: bool = True,
        extra: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    ):
        """MTP rows: ``hidden`` [n, B, H] (main model after its final norm, or the MTP's own output for a
        recursive draft), the embedding of ``next_tokens`` [B, n] (the token after each row), RoPE and
        attention at ``positions`` [B, n] (the rows' own positions). Returns (logits [B, n, V] for the token
        two ahead, MTP output [n, B, H] after its final norm, (k, v) of the rows)."""
        mtp = self.mtp_layer
        decoder_input = self.model.embedding(input_ids=next_tokens, position_ids=positions)
        x = mtp._concat_embeddings(hidden, decoder_input)  # enorm(emb) ++ hnorm(hidden) -> eh_proj
        layer = mtp.mtp_model_layer
        x, kv = self._attention_block(layer, self.mtp_layout, self.mtp, x, positions, extra, write)
        x = self._mlp_block(layer, x)
        out = mtp.final_layernorm(x)
        return self._logits(out), out, kv

    def clone(self) -> Decoder:
        """An independent copy of the caches (the modules are shared)."""
        other = object.__new__(Decoder)
        other.__dict__.update(self.__dict__)
        other.main = [c.clone() for c in self.main]
        if self.mtp_layer is not None:
            other.mtp = self.mtp.clone()
        return other

    def cache_bytes(self, *, include_mtp: bool = False) -> int:
        """Bytes of the K/V tensors held (positions excluded), main stack (and the MTP layer)."""
        total = sum(c.nbytes() for c in self.main)
        return total + (self.mtp.nbytes() if include_mtp and self.mtp_layer is not None else 0)

    def cache_values(self) -> int:
        """K/V elements of the main stack, whole batch: per sequence x 2 bytes is ``plan.kv_cache_bytes``."""
        return sum(c.k.numel() + c.v.numel() for c in self.main)


def _attend(q, cache: LayerCache, k_new, v_new, pos_new, q_pos, window: int | None, scale: float) -> torch.Tensor:
    """q [B, Hq, n, D] at q_pos [B, n] against concat(cache, new keys) with an absolute-position mask."""
    keys = torch.cat([cache.k.to(q.dtype), k_new], dim=2)
    values = torch.cat([cache.v.to(q.dtype), v_new], dim=2)
    key_pos = torch.cat([cache.positions, pos_new], dim=1).unsqueeze(1)  # [B, 1, S]
    qp = q_pos.unsqueeze(2)  # [B, n, 1]
    allowed = (key_pos >= 0) & (key_pos <= qp)
    if window is not None:
        allowed &= key_pos > qp - window
    groups = q.shape[1] // keys.shape[1]
    if groups > 1:
        keys, values = keys.repeat_interleave(groups, dim=1), values.repeat_interleave(groups, dim=1)
    return F.scaled_dot_product_attention(q, keys, values, attn_mask=allowed.unsqueeze(1), scale=scale)


# ---- generation ---------------------------------------------------------------------------------------


def _check(model, prompts: Sequence[Sequence[int]], vocab_size: int, max_new_tokens: int) -> None:
    if not prompts or not all(prompts):
        raise ValueError("decoding needs at least one prompt token")
    if len({len(p) for p in prompts}) != 1:
        raise ValueError("prompts must have one length")
    if not 0 < vocab_size <= model.vocab_size:
        raise ValueError(f"vocab_size={vocab_size} must be within 1..{model.vocab_size}")
    if min(min(p) for p in prompts) < 0 or max(max(p) for p in prompts) >= vocab_size:
        raise ValueError(f"prompt token ids must lie in [0, {vocab_size})")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0 (got {max_new_tokens})")


def _kernel_routing(router):
    """``TopKRouter.routing`` through ``kernels.router.sigmoid_router`` (the Triton kernel on GPU, its torch
    reference on CPU): the same (probs, routing_map) as Megatron's ``topk_routing_with_score_function``."""
    from kernels.router import sigmoid_router, to_megatron

    experts = router.config.num_moe_experts

    def routing(logits: torch.Tensor, padding_mask=None):
        flat = logits.view(-1, experts)
        weights, indices = sigmoid_router(
            flat, router.expert_bias, router.topk, router.config.moe_router_topk_scaling_factor, router.topk > 1
        )
        probs, routing_map = to_megatron(weights, indices, experts)
        return probs.to(logits.dtype), routing_map

    return routing


def _kernel_routable(module) -> bool:
    """A Megatron top-k router whose inference routing is exactly the fused sigmoid router's."""
    from megatron.core.transformer.moe.router import TopKRouter

    c = getattr(module, "config", None)
    return (
        isinstance(module, TopKRouter)
        and module.score_function == "sigmoid"
        and module.routing_type not in ("sinkhorn", "quantile_balancing")
        and c.moe_expert_capacity_factor is None
        and not c.moe_router_num_groups
        and c.moe_router_force_biased is None
        and not c.moe_router_force_load_balancing
    )


class _eval_mode:
    """Eval mode for the duration, and every MoE router routing through ``kernels.router`` (restored after)."""

    def __init__(self, model):
        self.model = model

    def __enter__(self):
        self.was_training = self.model.training
        self.model.eval()
        self.routers = [m for m in self.model.modules() if _kernel_routable(m)]
        for router in self.routers:
            router.routing = _kernel_routing(router)

    def __exit__(self, *exc):
        for router in self.routers:
            del router.routing  # back to the class's method
        self.model.train(self.was_training)


@torch.no_grad()
def greedy_generate(
    model,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    *,
    eos_token_id: int | None = None,
    vocab_size: int,
    cache_dtype: torch.dtype | None = None,
) -> list[list[int]]:
    """Greedy decoding of prompts of one length on the windowed cache; the same contract (and, in fp32,
    the same ids) as ``model.inference.generate_batch``: each row's generated ids, stopping after EOS."""
    _check(model, prompts, vocab_size, max_new_tokens)
    batch, length = len(prompts), len(prompts[0])
    out: list[list[int]] = [[] for _ in prompts]
    done = [False] * batch
    with _eval_mode(model):
        dec = Decoder(model, batch, length + max_new_tokens, cache_dtype=cache_dtype)
        tokens = torch.tensor([list(p) for p in prompts], dtype=torch.long, device=dec.device)
        if max_new_tokens == 0:
            return out
        logits, _ = dec.prefill(tokens)
        position = length
        for step in range(max_new_tokens):
            next_ids = logits[:, -1, :vocab_size].argmax(dim=-1)
            for row, token in enumerate(next_ids.tolist()):
                if not done[row]:
                    out[row].append(token)
                    done[row] = eos_token_id is not None and token == eos_token_id
            if all(done) or step == max_new_tokens - 1:
                break
            pos = torch.full((batch, 1), position, dtype=torch.long, device=dec.device)
            logits, _, _ = dec.forward(next_ids.unsqueeze(1), pos)
            position += 1
    return out


@dataclass
class SpeculativeStats:
    rounds: int = 0  # draft-and-verify rounds
    drafted: int = 0  # draft tokens proposed (num_draft_tokens per round)
    accepted: int = 0  # of them accepted
    forwards: int = 0  # main-model forwards (prefill chunks included)
    mtp_forwards: int = 0  # MTP-layer forwards
    accepted_at: list[int] = field(default_factory=list)  # per draft position j: rounds that accepted draft j
    verified_at: list[int] = field(default_factory=list)  # per draft position j: rounds that reached draft j

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.drafted if self.drafted else 0.0


def _transform(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """Probabilities after temperature and nucleus filtering (the same transform for target and draft)."""
    from model.inference import top_p_filter

    return torch.softmax(top_p_filter(logits.float() / temperature, top_p), dim=-1)


def _sample(probs: torch.Tensor, generator: torch.Generator | None) -> int:
    return int(torch.multinomial(probs.cpu(), 1, generator=generator))


def _uniform(generator: torch.Generator | None) -> float:
    return float(torch.rand((), generator=generator))


class SpeculativeSession:
    """One sequence decoded by MTP self-speculation. ``start(prompt)`` prefills and picks the first new
    token; each ``round()`` drafts, verifies and returns the tokens it emits (>= 1). State between rounds:
    ``next_token`` (emitted, not yet in the main cache) and the main hidden states whose MTP rows are not
    yet computed (their next tokens are known)."""

    def __init__(
        self,
        model,
        capacity: int,
        *,
        num_draft_tokens: int,
        vocab_size: int,
        temperature: float = 0.0,
        top_p: float = 1.0,
        generator: torch.Generator | None = None,
    ):
        if getattr(model, "mtp", None) is None:
            raise ValueError("speculative decoding needs the model's MTP block (config.mtp_num_layers >= 1)")
        if num_draft_tokens < 1:
            raise ValueError(f"num_draft_tokens must be >= 1 (got {num_draft_tokens})")
        if temperature < 0 or not 0 < top_p <= 1:
            raise ValueError(f"need temperature >= 0 and top_p in (0, 1] (got {temperature}, {top_p})")
        self.k, self.vocab = num_draft_tokens, vocab_size
        self.temperature, self.top_p, self.generator = temperature, top_p, generator
        self.dec = Decoder(model, 1, capacity)
        self.stats = SpeculativeStats(verified_at=[0] * self.k, accepted_at=[0] * self.k)

    def _pick(self, logits: torch.Tensor) -> int:
        if self.temperature == 0:
            return int(logits[: self.vocab].argmax())
        return _sample(_transform(logits[: self.vocab], self.temperature, self.top_p), self.generator)

    def start(self, prompt: Sequence[int]) -> int:
        dev = self.dec.device
        tokens = torch.tensor([list(prompt)], dtype=torch.long, device=dev)
        logits, hidden = self.dec.prefill(tokens)
        self.stats.forwards += -(-tokens.shape[1] // PREFILL_CHUNK)
        self.next_token = self._pick(logits[0, -1])
        self.position = tokens.shape[1]  # position of next_token
        # MTP rows 0..L-1 need tokens 1..L: the prompt's tail and the token just picked
        self.mtp_hidden = hidden
        self.mtp_tokens = tokens[0, 1:].tolist()
        return self.next_token

    def clone(self, generator: torch.Generator | None = None) -> SpeculativeSession:
        """An independent copy of a started session (its own caches; ``generator`` replaces the RNG)."""
        other = object.__new__(SpeculativeSession)
        other.__dict__.update(self.__dict__)
        other.dec = self.dec.clone()
        other.stats = SpeculativeStats(verified_at=[0] * self.k, accepted_at=[0] * self.k)
        other.mtp_tokens = list(self.mtp_tokens)
        other.generator = generator
        return other

    def _draft(self) -> tuple[list[int], list[torch.Tensor]]:
        """Commit the MTP rows whose inputs are verified, then draft k tokens (recursion on tentative rows)."""
        dec, dev = self.dec, self.dec.device
        n = self.mtp_hidden.shape[0]
        first = self.position - n
        next_tokens = torch.tensor([self.mtp_tokens + [self.next_token]], dtype=torch.long, device=dev)
        pos = torch.arange(first, first + n, device=dev).unsqueeze(0)
        for start in range(0, n, PREFILL_CHUNK):  # after the prefill: the whole prompt's rows, in chunks
            end = min(n, start + PREFILL_CHUNK)
            logits, out, _ = dec.mtp_forward(
                self.mtp_hidden[start:end], next_tokens[:, start:end], pos[:, start:end], write=True
            )
            self.stats.mtp_forwards += 1
        drafts, draft_logits = [], []
        extra = None
        last_logits, last_out = logits[0, -1], out[-1:]
        for j in range(self.k):
            drafts.append(self._pick(last_logits))
            draft_logits.append(last_logits[: self.vocab])
            if j == self.k - 1:
                break
            # recursive row at position + j: its own previous output as hidden, the draft as next token
            row_pos = torch.tensor([[self.position + j]], device=dev)
            ids = torch.tensor([[drafts[-1]]], device=dev)
            logits, out, (k, v) = dec.mtp_forward(last_out, ids, row_pos, write=False, extra=extra)
            self.stats.mtp_forwards += 1
            extra = (
                (k, v, row_pos)
                if extra is None
                else (torch.cat([extra[0], k], 2), torch.cat([extra[1], v], 2), torch.cat([extra[2], row_pos], 1))
            )
            last_logits, last_out = logits[0, -1], out
        return drafts, draft_logits

    def round(self) -> list[int]:
        dec, dev = self.dec, self.dec.device
        drafts, draft_logits = self._draft()
        k = len(drafts)
        ids = torch.tensor([[self.next_token] + drafts], dtype=torch.long, device=dev)
        pos = torch.arange(self.position, self.position + k + 1, device=dev).unsqueeze(0)
        logits, hidden, pending = dec.forward(ids, pos, write=False)
        self.stats.forwards += 1
        target = logits[0, :, : self.vocab]
        emitted: list[int] = []
        accepted = 0
        self.stats.rounds += 1
        self.stats.drafted += k
        for j, d in enumerate(drafts):
            self.stats.verified_at[j] += 1
            if self.temperature == 0:
                ok = int(target[j].argmax()) == d
                correction = None if ok else int(target[j].argmax())
            else:
                p = _transform(target[j], self.temperature, self.top_p)
                q = _transform(draft_logits[j], self.temperature, self.top_p)
                ok = _uniform(self.generator) * float(q[d]) < float(p[d])  # accept w.p. min(1, p/q)
                if not ok:
                    residual = torch.clamp(p - q, min=0)
                    residual = residual / residual.sum() if float(residual.sum()) > 0 else p
                    correction = _sample(residual, self.generator)
            if not ok:
                emitted.append(correction)
                break
            accepted += 1
            self.stats.accepted += 1
            self.stats.accepted_at[j] += 1
            emitted.append(d)
        if accepted == k:  # every draft accepted: a bonus token from the target at the last position
            emitted.append(self._pick(logits[0, k]))
        # verified: next_token and the accepted drafts go into the main cache; their hidden states wait for
        # their MTP rows (next tokens: the accepted drafts, then the newly emitted next token)
        dec.commit(pending, accepted + 1)
        self.mtp_hidden = hidden[: accepted + 1]
        self.mtp_tokens = drafts[:accepted]
        self.position += accepted + 1
        self.next_token = emitted[-1]
        return emitted


@torch.no_grad()
def speculative_generate(
    model,
    prompt: Sequence[int],
    max_new_tokens: int,
    *,
    num_draft_tokens: int,
    vocab_size: int,
    eos_token_id: int | None = None,
    temperature: float = 0.0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
) -> tuple[list[int], SpeculativeStats]:
    """MTP self-speculative decoding of one prompt: (generated ids, stopping after EOS; stats).
    Temperature 0: the ids of plain greedy decoding. Otherwise each token is distributed as plain
    sampling with the same temperature / top-p (speculative sampling's acceptance rule)."""
    _check(model, [prompt], vocab_size, max_new_tokens)
    out: list[int] = []
    with _eval_mode(model):
        session = SpeculativeSession(
            model,
            len(prompt) + max_new_tokens + num_draft_tokens + 2,
            num_draft_tokens=num_draft_tokens,
            vocab_size=vocab_size,
            temperature=temperature,
            top_p=top_p,
            generator=generator,
        )
        if max_new_tokens == 0:
            return out, session.stats
        new = [session.start(prompt)]
        while True:
            for token in new:
                out.append(token)
                if len(out) == max_new_tokens or (eos_token_id is not None and token == eos_token_id):
                    return out, session.stats
            new = session.round()


__all__ = [
    "Decoder",
    "LayerCache",
    "PREFILL_CHUNK",
    "Pending",
    "SpeculativeSession",
    "SpeculativeStats",
    "decode_attention",
    "greedy_generate",
    "speculative_generate",
]
