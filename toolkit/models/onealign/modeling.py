"""mPLUG-Owl2 (OneAlign / Q-Align) on transformers 5 building blocks.

The language model is LLaMA-2 with *modality-adaptive* layers: ``k_proj``, ``v_proj`` and both
RMSNorms of every decoder layer have two branches (``multiway.0`` for text tokens, ``multiway.1``
for visual tokens), chosen per token by ``modality_indicators``; ``q_proj``, ``o_proj``, the MLP
and the final norm are shared. Images go through the ViT and the visual abstractor
(:mod:`toolkit.models.onealign.vision`) and their tokens replace the ``-200`` placeholder of the
prompt. Everything else (RMSNorm, RoPE, MLP, attention kernels, causal masks, the causal-LM
loss) is transformers' LLaMA code.

Parameter names are those of the released checkpoint, so ``from_pretrained`` loads
``q-future/one-align`` (``pytorch_model-*.bin`` shards or a safetensors conversion) unchanged,
without ``trust_remote_code``. Loading is strict: a checkpoint with missing or unexpected
tensors is an error that lists them (the sin-cos position tables of the abstractor excepted,
which are rebuilt when absent).

Memory for the real model: 8.2 B parameters (LLaMA-2-7B, 6.7 B, plus the 1.1 B of the visual
k/v branches, the 0.3 B ViT-L/14 and the 0.08 B abstractor): about 33 GB of weights in float32,
16.5 GB in bfloat16 / float16, plus activations (one frame = 65 LLM tokens; scoring 16 images
at once peaks at about 17 GB in bfloat16 with SDPA).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

import torch
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.cache_utils import Cache, DynamicCache
from transformers.masking_utils import create_causal_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.llama.modeling_llama import (
    LlamaMLP,
    LlamaRMSNorm,
    LlamaRotaryEmbedding,
    apply_rotary_pos_emb,
    eager_attention_forward,
)

from toolkit.errors import InputError
from toolkit.models.onealign.configuration import MPLUGOwl2Config
from toolkit.models.onealign.vision import (
    MplugOwlVisionEmbeddings,
    MplugOwlVisionModel,
    MplugOwlVisualAbstractorModel,
    MplugOwlVisualAbstractorMultiHeadAttention,
)
from toolkit.models.onealign.visual_tokens import (
    IMAGE_TOKEN_INDEX,
    MergedInputs,
    embedding_device,
    merge_visual_tokens,
    split_images,
    widen_placeholder_mask,
)

# transformers 5.2x renamed the KV-cache argument and output field from ``past_key_values`` to
# ``cache``; both spellings are handled so that the port runs on every 5.x release.
_MASK_CACHE_ARG = "cache" if "cache" in inspect.signature(create_causal_mask).parameters else "past_key_values"
_GEN_CACHE_ARG = (
    "cache"
    if "cache" in inspect.signature(GenerationMixin.prepare_inputs_for_generation).parameters
    else "past_key_values"
)
_OUTPUT_CACHE_FIELD = "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"

try:
    from transformers.modeling_utils import slice_logits_to_keep
except ImportError:  # transformers < 5.2x

    def slice_logits_to_keep(hidden_states: torch.Tensor, logits_to_keep: int | torch.Tensor) -> torch.Tensor:
        index = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) else logits_to_keep
        return hidden_states[:, index, :]


# Buffers that the reference saves but that are a fixed function of the config: a checkpoint
# without them is still complete.
_REBUILDABLE_SUFFIXES = ("q_pos_embed", "k_pos_embed")


class CheckpointMismatchError(InputError):
    """A checkpoint whose tensors do not match the model (names listed in the message)."""


# --------------------------------------------------------------------------- language model


@dataclass(frozen=True)
class ModalityRouting:
    """Which tokens go through which branch of the modality-adaptive layers.

    Built once per forward from ``modality_indicators`` and shared by the 4 multiway modules of
    every layer. Selecting tokens with a boolean mask (``hidden[indicators == k]``) makes the
    host wait for the device each time, because the output size depends on the data; with the
    flat token indices and counts of each branch computed here once (one wait per forward),
    the layers only gather and scatter with index tensors of known size, and the device queue
    never drains. The tokens of a branch keep their row-major order, so each branch sees the
    same rows in the same order as with mask selection and computes bit-identical results.
    """

    counts: tuple[int, ...]
    """Number of tokens per branch."""
    indices: tuple[torch.Tensor | None, ...]
    """Flat (batch * length) token indices per branch; ``None`` when a branch has no token."""

    @classmethod
    def from_indicators(cls, modality_indicators: torch.Tensor, num_branches: int = 2) -> ModalityRouting:
        flat = modality_indicators.reshape(-1).long()
        # Branch sizes and the count of out-of-range values in one device-to-host copy.
        in_range = ((flat >= 0) & (flat < num_branches)).sum()
        stats = torch.stack([(flat == k).sum() for k in range(num_branches)] + [flat.numel() - in_range]).tolist()
        *counts_list, invalid = (int(v) for v in stats)
        if invalid:
            raise ValueError(
                f"modality_indicators must lie in 0..{num_branches - 1}; {invalid} value(s) do not "
                f"(found {sorted(set(flat.unique().tolist()))})"
            )
        counts = tuple(counts_list)
        if max(counts, default=0) == flat.numel():  # one modality only: no index needed
            return cls(counts, (None,) * num_branches)
        # A stable sort groups the token positions by branch, row-major within each branch.
        order = torch.sort(flat, stable=True).indices
        parts = torch.split(order, list(counts))
        return cls(counts, tuple(part if n else None for part, n in zip(parts, counts)))

    def only_branch(self) -> int | None:
        """The branch that holds every token, if there is one."""
        total = sum(self.counts)
        for k, n in enumerate(self.counts):
            if n == total:
                return k
        return None


class MultiwayNetwork(nn.Module):
    """One module per modality; each token goes through the branch its indicator names."""

    def __init__(self, make: Callable[[], nn.Module], num_multiway: int = 2) -> None:
        super().__init__()
        self.multiway = nn.ModuleList([make() for _ in range(num_multiway)])

    def forward(self, hidden_states: torch.Tensor, modality: ModalityRouting | torch.Tensor | None) -> torch.Tensor:
        """``modality``: the routing of the forward (see :class:`ModalityRouting`), or per-token
        indicators (B, T), which are turned into a routing here (one host-device wait)."""
        if modality is None or len(self.multiway) == 1:
            return self.multiway[0](hidden_states)
        routing = (
            modality
            if isinstance(modality, ModalityRouting)
            else ModalityRouting.from_indicators(modality, len(self.multiway))
        )
        only = routing.only_branch()
        if only is not None:
            return self.multiway[only](hidden_states)
        flat = hidden_states.reshape(-1, hidden_states.shape[-1])
        out: torch.Tensor | None = None
        for branch, index in zip(self.multiway, routing.indices):
            if index is None:
                # Only the selected tokens go through a branch (as in the reference), so a
                # branch that sees no token of a batch gets no gradient from it.
                continue
            y = branch(flat.index_select(0, index))
            if out is None:
                out = y.new_empty(flat.shape[0], y.shape[-1])
            out.index_copy_(0, index, y)
        assert out is not None  # at least two branches hold tokens here
        return out.view(*hidden_states.shape[:-1], out.shape[-1])


class MPLUGOwl2Attention(nn.Module):
    """LLaMA attention whose key and value projections are modality-adaptive."""

    def __init__(self, config: MPLUGOwl2Config, layer_idx: int) -> None:
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.head_dim: int = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        num_key_value_heads = config.num_key_value_heads
        if num_key_value_heads is None:  # LlamaConfig's __post_init__ fills it from num_attention_heads
            raise ValueError("config.num_key_value_heads is unset")
        self.num_key_value_groups = config.num_attention_heads // num_key_value_heads
        self.scaling = self.head_dim**-0.5
        self.attention_dropout = config.attention_dropout
        self.is_causal = True
        bias = config.attention_bias
        kv_width = num_key_value_heads * self.head_dim
        self.q_proj = nn.Linear(config.hidden_size, config.num_attention_heads * self.head_dim, bias=bias)
        self.k_proj = MultiwayNetwork(partial(nn.Linear, config.hidden_size, kv_width, bias=bias))
        self.v_proj = MultiwayNetwork(partial(nn.Linear, config.hidden_size, kv_width, bias=bias))
        self.o_proj = nn.Linear(config.num_attention_heads * self.head_dim, config.hidden_size, bias=bias)

    def forward(
        self,
        hidden_states: torch.Tensor,
        modality_indicators: ModalityRouting | torch.Tensor | None,
        position_embeddings: tuple[torch.Tensor, torch.Tensor],
        attention_mask: torch.Tensor | None,
        cache: Cache | None = None,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        input_shape = hidden_states.shape[:-1]
        hidden_shape = (*input_shape, -1, self.head_dim)
        query = self.q_proj(hidden_states).view(hidden_shape).transpose(1, 2)
        key = self.k_proj(hidden_states, modality_indicators).view(hidden_shape).transpose(1, 2)
        value = self.v_proj(hidden_states, modality_indicators).view(hidden_shape).transpose(1, 2)

        cos, sin = position_embeddings
        query, key = apply_rotary_pos_emb(query, key, cos, sin)
        if cache is not None:
            key, value = cache.update(key, value, self.layer_idx)

        attention = ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation, eager_attention_forward)
        out, weights = attention(
            self,
            query,
            key,
            value,
            attention_mask,
            dropout=0.0 if not self.training else self.attention_dropout,
            scaling=self.scaling,
            **kwargs,
        )
        return self.o_proj(out.reshape(*input_shape, -1).contiguous()), weights


class MPLUGOwl2DecoderLayer(GradientCheckpointingLayer):
    def __init__(self, config: MPLUGOwl2Config, layer_idx: int) -> None:
        super().__init__()
        norm = partial(LlamaRMSNorm, config.hidden_size, eps=config.rms_norm_eps)
        self.self_attn = MPLUGOwl2Attention(config, layer_idx)
        self.mlp = LlamaMLP(config)
        self.input_layernorm = MultiwayNetwork(norm)
        self.post_attention_layernorm = MultiwayNetwork(norm)

    def forward(
        self,
        hidden_states: torch.Tensor,
        modality_indicators: ModalityRouting | torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None,
        cache: Cache | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        residual = hidden_states
        hidden_states = self.input_layernorm(hidden_states, modality_indicators)
        hidden_states, _ = self.self_attn(
            hidden_states, modality_indicators, position_embeddings, attention_mask, cache=cache, **kwargs
        )
        hidden_states = residual + hidden_states
        residual = hidden_states
        hidden_states = self.mlp(self.post_attention_layernorm(hidden_states, modality_indicators))
        return residual + hidden_states


class MPLUGOwl2PreTrainedModel(PreTrainedModel):
    config_class = MPLUGOwl2Config
    config: MPLUGOwl2Config
    base_model_prefix = "model"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _no_split_modules = ["MPLUGOwl2DecoderLayer", "MplugOwlVisionEncoderLayer", "MplugOwlVisualAbstractorLayer"]
    _supports_sdpa = True
    _supports_attention_backend = True
    _can_compile_fullgraph = False  # data-dependent placeholder expansion and branch selection
    # Checkpoints saved by older transformers may carry the (recomputed) rotary frequencies.
    _keys_to_ignore_on_load_unexpected = [r"rotary_emb\.inv_freq"]

    def _init_weights(self, module: nn.Module) -> None:
        """Random initialisation for models built from a config (checkpoints overwrite it)."""
        super()._init_weights(module)
        std = self.config.initializer_range
        if isinstance(module, MplugOwlVisionEmbeddings):
            init.normal_(module.cls_token, mean=0.0, std=std)
            init.normal_(module.position_embedding, mean=0.0, std=std)
        elif isinstance(module, MplugOwlVisualAbstractorModel):
            init.normal_(module.query_embeds, mean=0.0, std=std)
            init.normal_(module.vit_eos, mean=0.0, std=std)
        elif isinstance(module, MplugOwlVisualAbstractorMultiHeadAttention):
            ac = self.config.abstractor_settings()
            init.copy_(module.q_pos_embed, module.query_position_table(ac))
            init.copy_(module.k_pos_embed, module.key_position_table(ac))


class MPLUGOwl2LlamaModel(MPLUGOwl2PreTrainedModel):
    """Vision tower + abstractor + modality-adaptive LLaMA decoder (no LM head)."""

    def __init__(self, config: MPLUGOwl2Config) -> None:
        super().__init__(config)
        self.padding_idx = config.pad_token_id
        # Any module may replace it (``set_input_embeddings``, a PEFT wrapper), hence the wide type.
        self.embed_tokens: nn.Module = nn.Embedding(config.vocab_size, config.hidden_size, self.padding_idx)
        self.layers = nn.ModuleList([MPLUGOwl2DecoderLayer(config, i) for i in range(config.num_hidden_layers)])
        self.norm = LlamaRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = LlamaRotaryEmbedding(config=config)
        self.vision_model = MplugOwlVisionModel(config)
        self.visual_abstractor = MplugOwlVisualAbstractorModel(config)
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.embed_tokens

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.embed_tokens = value

    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) preprocessed images -> (N, Q + 1, hidden) LLM tokens."""
        dtype = self.vision_model.embeddings.patch_embed.weight.dtype
        device = self.vision_model.embeddings.patch_embed.weight.device
        # Move first, then cast on the device: the cast is far cheaper there than on the host.
        vision_tokens = self.vision_model(pixel_values.to(device, non_blocking=True).to(dtype))
        return self.visual_abstractor(vision_tokens)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        modality_indicators: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        past_key_values: Cache | None = None,
        **kwargs: Any,
    ) -> BaseModelOutputWithPast:
        cache = cache if cache is not None else past_key_values
        if input_ids is not None and inputs_embeds is not None:
            raise ValueError("pass exactly one of input_ids or inputs_embeds")
        if inputs_embeds is None:
            if input_ids is None:
                raise ValueError("pass exactly one of input_ids or inputs_embeds")
            if bool((input_ids < 0).any()):
                raise ValueError("input_ids contain image placeholders: pass images to the causal-LM model")
            inputs_embeds = self.embed_tokens(input_ids)
        batch, length = inputs_embeds.shape[:2]
        # Which tokens take the visual branches, worked out once for all layers (no indicators:
        # text only, the text branches for every token).
        if modality_indicators is not None and tuple(modality_indicators.shape) != (batch, length):
            raise ValueError(
                f"modality_indicators has shape {tuple(modality_indicators.shape)}, the inputs {(batch, length)}"
            )
        routing = None if modality_indicators is None else ModalityRouting.from_indicators(modality_indicators)
        use_cache = self.config.use_cache if use_cache is None else use_cache
        if use_cache and cache is None and not self.training:
            cache = DynamicCache(config=self.config)
        past = cache.get_seq_length() if cache is not None else 0
        if position_ids is None:
            position_ids = _positions(attention_mask, batch, length, past, inputs_embeds.device)

        causal_mask = create_causal_mask(
            config=self.config,
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            **{_MASK_CACHE_ARG: cache},
        )
        hidden_states = inputs_embeds
        position_embeddings = self.rotary_emb(hidden_states, position_ids=position_ids)
        want_hidden = self.config.output_hidden_states if output_hidden_states is None else output_hidden_states
        all_hidden: tuple[torch.Tensor, ...] | None = () if want_hidden else None
        for layer in self.layers[: self.config.num_hidden_layers]:
            if all_hidden is not None:
                all_hidden += (hidden_states,)
            hidden_states = layer(
                hidden_states,
                routing,
                attention_mask=causal_mask,
                position_embeddings=position_embeddings,
                cache=cache,
                **kwargs,
            )
        hidden_states = self.norm(hidden_states)
        if all_hidden is not None:
            # As in transformers 4.x LLaMA: the last entry is the normed output, not the raw last layer.
            all_hidden += (hidden_states,)
        # The cache field's name depends on the transformers release, so mypy cannot match it to a parameter.
        cache_field: dict[str, Any] = {_OUTPUT_CACHE_FIELD: cache}
        return BaseModelOutputWithPast(last_hidden_state=hidden_states, hidden_states=all_hidden, **cache_field)


def _positions(
    attention_mask: torch.Tensor | None, batch: int, length: int, past: int, device: torch.device
) -> torch.Tensor:
    """RoPE positions counted over real tokens only, so a left-padded row gets the same
    positions as the row alone; without a mask, 0..T-1 (after the cached tokens)."""
    if attention_mask is not None and attention_mask.ndim == 2 and attention_mask.shape[1] == past + length:
        positions = attention_mask.long().cumsum(-1) - 1
        return positions.clamp(min=0)[:, past:].to(device)
    return (torch.arange(length, device=device) + past).unsqueeze(0).expand(batch, -1)


# --------------------------------------------------------------------------- causal LM


class MPLUGOwl2LlamaForCausalLM(MPLUGOwl2PreTrainedModel, GenerationMixin):
    """mPLUG-Owl2 with its LM head; ``forward(input_ids, images=...)`` like the released model."""

    _tp_plan = {"lm_head": "colwise_gather_output"}

    def __init__(self, config: MPLUGOwl2Config) -> None:
        super().__init__(config)
        self.model = MPLUGOwl2LlamaModel(config)
        self.vocab_size = config.vocab_size
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    # -- loading -------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, *args: Any, **kwargs: Any) -> Any:
        """``PreTrainedModel.from_pretrained`` that refuses incomplete or foreign checkpoints.

        transformers only warns about missing tensors and initialises them at random, which
        for a scoring model silently gives meaningless scores. Pass ``strict=False`` to load a
        partial checkpoint anyway (for example to start a new model from a LLaMA).
        """
        strict = kwargs.pop("strict", True)
        want_info = kwargs.pop("output_loading_info", False)
        # transformers annotates the result as the model alone; with output_loading_info it is (model, info).
        model, info = cast(
            "tuple[MPLUGOwl2LlamaForCausalLM, dict[str, Any]]",
            super().from_pretrained(*args, output_loading_info=True, **kwargs),
        )
        if strict:
            check_loading_info(info, args[0] if args else kwargs.get("pretrained_model_name_or_path"))
        return (model, info) if want_info else model

    def get_input_embeddings(self) -> nn.Module:
        return self.model.embed_tokens

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.model.embed_tokens = value

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Module) -> None:
        self.lm_head = value

    # -- inputs --------------------------------------------------------------------------------

    def encode_images(self, images: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Visual tokens per placeholder: one (frames * (Q + 1), hidden) tensor per image or video."""
        if not isinstance(images, torch.Tensor):
            # Stack on the device rather than on the host (a batch of 448 px frames is tens of MB).
            device = self.model.vision_model.embeddings.patch_embed.weight.device
            images = [x.to(device, non_blocking=True) for x in images]
        stacked, counts = split_images(images)
        tokens = self.model.encode_images(stacked)
        return [chunk.flatten(0, 1) for chunk in torch.split(tokens, counts, dim=0)]

    def prepare_multimodal_inputs(
        self,
        input_ids: torch.Tensor,
        images: torch.Tensor | Sequence[torch.Tensor],
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        padding_side: str = "right",
    ) -> MergedInputs:
        """Embeddings, modality indicators, mask and labels with the visual tokens in place.

        ``forward`` does this itself when given ``images`` (right padding, as the reference); call
        it directly to left-pad, then pass the result to ``forward``.
        """
        # The ids stay where they are: the merge reads their layout on the host (no wait for the
        # device when they come from the host) and moves them itself.
        if labels is not None:
            labels = labels.to(embedding_device(self.model.embed_tokens))
        features = self.encode_images(images)
        return merge_visual_tokens(self.model.embed_tokens, input_ids, features, attention_mask, labels, padding_side)

    # -- forward -------------------------------------------------------------------------------

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        use_cache: bool | None = None,
        images: torch.Tensor | Sequence[torch.Tensor] | None = None,
        modality_indicators: torch.Tensor | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        output_hidden_states: bool | None = None,
        past_key_values: Cache | None = None,
        **kwargs: Any,
    ) -> CausalLMOutputWithPast:
        """``input_ids`` with ``-200`` where the visual tokens of ``images`` go; ``labels`` aligned
        with ``input_ids`` (the visual positions get -100). Or precomputed ``inputs_embeds`` plus
        ``modality_indicators`` from :meth:`prepare_multimodal_inputs`."""
        cache = cache if cache is not None else past_key_values
        if images is not None and input_ids is not None and bool((input_ids == IMAGE_TOKEN_INDEX).any()):
            merged = self.prepare_multimodal_inputs(input_ids, images, attention_mask, labels)
            input_ids = None
            inputs_embeds = merged["inputs_embeds"]
            modality_indicators = merged["modality_indicators"]
            attention_mask = merged["attention_mask"]
            labels = merged["labels"]
            if position_ids is not None and position_ids.shape[-1] != inputs_embeds.shape[1]:
                position_ids = None  # they counted the unexpanded ids; recount over the merged sequence
        elif input_ids is not None and bool((input_ids == IMAGE_TOKEN_INDEX).any()):
            raise ValueError(f"input_ids contain the image placeholder {IMAGE_TOKEN_INDEX} but no images were given")

        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            modality_indicators=modality_indicators,
            use_cache=use_cache,
            output_hidden_states=output_hidden_states,
            **kwargs,
        )
        hidden_states = outputs.last_hidden_state
        if labels is None:
            hidden_states = slice_logits_to_keep(hidden_states, logits_to_keep)
        logits = self.lm_head(hidden_states)
        loss = None
        if labels is not None:
            # One mean over every supervised token of the batch, as the reference's CrossEntropyLoss.
            loss = self.loss_function(logits=logits, labels=labels, vocab_size=self.config.vocab_size, **kwargs)
        return CausalLMOutputWithPast(
            loss=loss,
            logits=logits,
            hidden_states=outputs.hidden_states,
            **{_OUTPUT_CACHE_FIELD: getattr(outputs, _OUTPUT_CACHE_FIELD)},
        )

    def prepare_inputs_for_generation(
        self,
        input_ids: torch.LongTensor,
        cache: Cache | None = None,
        attention_mask: torch.Tensor | None = None,
        images: torch.Tensor | Sequence[torch.Tensor] | None = None,
        is_first_iteration: bool | None = False,
        past_key_values: Cache | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """Images enter on the first step only; later steps see the cache, which holds the
        expanded sequence, so the mask is rebuilt at that length (placeholders widened)."""
        cache = cache if cache is not None else past_key_values
        first = cache is None or cache.get_seq_length() == 0
        if not first and attention_mask is not None and images is not None:
            attention_mask = widen_placeholder_mask(
                input_ids, attention_mask, images, self.config.num_visual_tokens_per_image
            )
        model_inputs = super().prepare_inputs_for_generation(
            input_ids,
            attention_mask=attention_mask,
            is_first_iteration=is_first_iteration,
            **{_GEN_CACHE_ARG: cache},
            **kwargs,
        )
        # Positions derived from the unexpanded ids would be off by the visual tokens; the
        # forward counts them from the (widened) mask instead.
        model_inputs.pop("position_ids", None)
        if first:
            model_inputs["images"] = images
        else:
            model_inputs.pop("images", None)
            model_inputs["attention_mask"] = attention_mask
        return model_inputs


def check_loading_info(info: dict[str, Any], source: Any) -> None:
    """Raise :class:`CheckpointMismatchError` listing missing / unexpected / mismatched tensors."""
    missing = sorted(k for k in info.get("missing_keys", ()) if not k.endswith(_REBUILDABLE_SUFFIXES))
    unexpected = sorted(info.get("unexpected_keys", ()))
    mismatched = sorted(
        f"{k} (checkpoint {tuple(a)} vs model {tuple(b)})" for k, a, b in info.get("mismatched_keys", ())
    )
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing tensor(s): {', '.join(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensor(s): {', '.join(unexpected)}")
    if mismatched:
        problems.append(f"{len(mismatched)} tensor(s) of the wrong shape: {', '.join(mismatched)}")
    if problems:
        raise CheckpointMismatchError(
            f"checkpoint {source} does not match the mPLUG-Owl2 architecture: "
            + "; ".join(problems)
            + " (pass strict=False to load it anyway)"
        )


__all__ = [
    "IMAGE_TOKEN_INDEX",
    "CheckpointMismatchError",
    "ModalityRouting",
    "MPLUGOwl2LlamaForCausalLM",
    "MPLUGOwl2LlamaModel",
    "MPLUGOwl2PreTrainedModel",
    "check_loading_info",
]
