"""The visual side of mPLUG-Owl2: a ViT-L/14 tower and the visual abstractor.

Module and parameter names follow the released checkpoint (``vision_model.embeddings.cls_token``,
``visual_abstractor.encoder.layers.i.crossattention.attention.q_pos_embed``, ...), so its
tensors load unchanged. Attention goes through the transformers attention interface (eager,
SDPA, ...), selected by the ``_attn_implementation`` of the top-level model config.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.llama.modeling_llama import eager_attention_forward

from toolkit.models.onealign.configuration import (
    MPLUGOwl2Config,
    MplugOwlVisionConfig,
    MplugOwlVisualAbstractorConfig,
)

# The abstractor's norm1/normk/norm2 are plain ``nn.LayerNorm(dim)`` in the reference, i.e. eps
# 1e-5 whatever the config says; only ``ffn_ln`` reads ``layer_norm_eps``.
_TORCH_LAYERNORM_EPS = 1e-5


def sincos_1d(dim: int, positions: np.ndarray) -> np.ndarray:
    """[sin | cos] table of shape (len(positions), dim) with omega_i = 10000^(-i / (dim/2))."""
    if dim % 2:
        raise ValueError(f"sin-cos embedding width must be even, got {dim}")
    omega = np.arange(dim // 2, dtype=np.float32) / (dim / 2.0)
    omega = 1.0 / 10000**omega
    out = np.einsum("m,d->md", positions.reshape(-1).astype(np.float32), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def sincos_2d_with_cls(dim: int, grid: int) -> np.ndarray:
    """A zero row (class token) then a row-major G x G table: first half x (column), second half y (row)."""
    ys, xs = np.meshgrid(np.arange(grid, dtype=np.float32), np.arange(grid, dtype=np.float32), indexing="ij")
    table = np.concatenate([sincos_1d(dim // 2, xs), sincos_1d(dim // 2, ys)], axis=1)
    return np.concatenate([np.zeros((1, dim), dtype=table.dtype), table], axis=0)


def _attention(config: MPLUGOwl2Config) -> Callable:
    return ALL_ATTENTION_FUNCTIONS.get_interface(config._attn_implementation, eager_attention_forward)


class QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


# --------------------------------------------------------------------------- vision tower


class MplugOwlVisionEmbeddings(nn.Module):
    def __init__(self, vc: MplugOwlVisionConfig) -> None:
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, vc.hidden_size))
        self.patch_embed = nn.Conv2d(vc.num_channels, vc.hidden_size, vc.patch_size, stride=vc.patch_size, bias=False)
        self.position_embedding = nn.Parameter(torch.zeros(1, vc.num_patches + 1, vc.hidden_size))
        self.pre_layernorm = nn.LayerNorm(vc.hidden_size, eps=vc.layer_norm_eps)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        patches = self.patch_embed(pixel_values).flatten(2).transpose(1, 2)
        cls = self.cls_token.expand(patches.shape[0], 1, -1).to(patches.dtype)
        tokens = torch.cat([cls, patches], dim=1)
        tokens = tokens + self.position_embedding[:, : tokens.shape[1]].to(patches.dtype)
        return self.pre_layernorm(tokens)


class MplugOwlVisionAttention(nn.Module):
    def __init__(self, config: MPLUGOwl2Config, vc: MplugOwlVisionConfig) -> None:
        super().__init__()
        self.config = config  # the top-level config: it carries the attention implementation
        self.num_heads = vc.num_attention_heads
        self.head_dim = vc.hidden_size // vc.num_attention_heads
        if self.head_dim * self.num_heads != vc.hidden_size:
            raise ValueError(f"vision hidden size {vc.hidden_size} is not a multiple of {vc.num_attention_heads} heads")
        self.scaling = self.head_dim**-0.5
        self.dropout = vc.attention_dropout
        self.is_causal = False
        self.num_key_value_groups = 1
        self.query_key_value = nn.Linear(vc.hidden_size, 3 * vc.hidden_size)
        self.dense = nn.Linear(vc.hidden_size, vc.hidden_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        b, n, d = hidden_states.shape
        # The fused projection is laid out per head as [q | k | v], not [all q | all k | all v].
        qkv = self.query_key_value(hidden_states).reshape(b, n, self.num_heads, 3, self.head_dim)
        q, k, v = qkv.permute(3, 0, 2, 1, 4).unbind(0)  # each (b, heads, n, head_dim)
        out, _ = _attention(self.config)(
            self, q, k, v, None, dropout=self.dropout if self.training else 0.0, scaling=self.scaling, is_causal=False
        )
        return self.dense(out.reshape(b, n, d))


class MplugOwlMLP(nn.Module):
    def __init__(self, vc: MplugOwlVisionConfig) -> None:
        super().__init__()
        self.fc1 = nn.Linear(vc.hidden_size, vc.intermediate_size)
        self.act = QuickGELU()
        self.fc2 = nn.Linear(vc.intermediate_size, vc.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class MplugOwlVisionEncoderLayer(GradientCheckpointingLayer):
    def __init__(self, config: MPLUGOwl2Config, vc: MplugOwlVisionConfig) -> None:
        super().__init__()
        self.input_layernorm = nn.LayerNorm(vc.hidden_size, eps=vc.layer_norm_eps)
        self.self_attn = MplugOwlVisionAttention(config, vc)
        self.post_attention_layernorm = nn.LayerNorm(vc.hidden_size, eps=vc.layer_norm_eps)
        self.mlp = MplugOwlMLP(vc)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = hidden_states + self.self_attn(self.input_layernorm(hidden_states))
        return hidden_states + self.mlp(self.post_attention_layernorm(hidden_states))


class MplugOwlVisionEncoder(nn.Module):
    def __init__(self, config: MPLUGOwl2Config, vc: MplugOwlVisionConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList([MplugOwlVisionEncoderLayer(config, vc) for _ in range(vc.num_hidden_layers)])


class MplugOwlVisionModel(nn.Module):
    """Pre-norm ViT; returns all N + 1 tokens (class token first) after the final LayerNorm."""

    def __init__(self, config: MPLUGOwl2Config) -> None:
        super().__init__()
        vc = config.vision_settings()
        self.embeddings = MplugOwlVisionEmbeddings(vc)
        self.encoder = MplugOwlVisionEncoder(config, vc)
        self.post_layernorm = nn.LayerNorm(vc.hidden_size, eps=vc.layer_norm_eps)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        hidden_states = self.embeddings(pixel_values)
        for layer in self.encoder.layers:
            hidden_states = layer(hidden_states)
        return self.post_layernorm(hidden_states)


# --------------------------------------------------------------------------- visual abstractor


class MplugOwlVisualAbstractorMLP(nn.Module):
    """SwiGLU with a LayerNorm on the hidden units (``ffn_ln``, the config's eps)."""

    def __init__(self, ac: MplugOwlVisualAbstractorConfig) -> None:
        super().__init__()
        self.w1 = nn.Linear(ac.hidden_size, ac.intermediate_size)
        self.w2 = nn.Linear(ac.intermediate_size, ac.hidden_size)
        self.w3 = nn.Linear(ac.hidden_size, ac.intermediate_size)
        self.ffn_ln = nn.LayerNorm(ac.intermediate_size, eps=ac.layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(self.ffn_ln(nn.functional.silu(self.w1(x)) * self.w3(x)))


class MplugOwlVisualAbstractorMultiHeadAttention(nn.Module):
    # Buffers registered in ``__init__``; declared so that attribute access is typed as a tensor.
    q_pos_embed: torch.Tensor
    k_pos_embed: torch.Tensor

    def __init__(self, config: MPLUGOwl2Config, ac: MplugOwlVisualAbstractorConfig) -> None:
        super().__init__()
        self.config = config
        self.num_heads = ac.num_attention_heads
        self.head_dim = ac.hidden_size // ac.num_attention_heads
        if self.head_dim * self.num_heads != ac.hidden_size:
            raise ValueError(
                f"abstractor hidden size {ac.hidden_size} is not a multiple of {ac.num_attention_heads} heads"
            )
        self.scaling = self.head_dim**-0.5
        self.dropout = ac.attention_probs_dropout_prob
        self.is_causal = False
        self.num_key_value_groups = 1
        self.query = nn.Linear(ac.hidden_size, ac.hidden_size)
        self.key = nn.Linear(ac.encoder_hidden_size, ac.hidden_size)
        self.value = nn.Linear(ac.encoder_hidden_size, ac.hidden_size)
        # Fixed sin-cos tables, saved in the checkpoint (persistent buffers); the stored values win.
        self.register_buffer("q_pos_embed", self.query_position_table(ac), persistent=True)
        self.register_buffer("k_pos_embed", self.key_position_table(ac), persistent=True)

    @staticmethod
    def query_position_table(ac: MplugOwlVisualAbstractorConfig) -> torch.Tensor:
        # torch.tensor (not from_numpy) honours a default-device context such as ``with torch.device("cuda")``.
        return torch.tensor(sincos_1d(ac.hidden_size, np.arange(ac.num_learnable_queries)), dtype=torch.float32)

    @staticmethod
    def key_position_table(ac: MplugOwlVisualAbstractorConfig) -> torch.Tensor:
        return torch.tensor(sincos_2d_with_cls(ac.hidden_size, ac.grid_size), dtype=torch.float32)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(*x.shape[:-1], self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """``queries`` (B, Q, D) normalised queries; ``keys`` (B, Q + N, D) = [queries; image tokens]."""
        q_pos = self.q_pos_embed.to(queries.dtype)
        kv_pos = torch.cat([self.q_pos_embed, self.k_pos_embed], dim=0).to(queries.dtype)
        if kv_pos.shape[0] != keys.shape[1]:
            raise ValueError(
                f"the abstractor expects {kv_pos.shape[0] - q_pos.shape[0]} vision tokens "
                f"(grid {self.k_pos_embed.shape[0] - 1} + class token), got {keys.shape[1] - q_pos.shape[0]}; "
                "image size and grid_size disagree"
            )
        q = self._heads(self.query(queries + q_pos))
        k = self._heads(self.key(keys + kv_pos))
        v = self._heads(self.value(keys))  # values carry no position term
        out, _ = _attention(self.config)(
            self, q, k, v, None, dropout=self.dropout if self.training else 0.0, scaling=self.scaling, is_causal=False
        )
        return out.reshape(*queries.shape[:-1], -1)


class MplugOwlVisualAbstractorCrossOutput(nn.Module):
    def __init__(self, ac: MplugOwlVisualAbstractorConfig) -> None:
        super().__init__()
        self.out_proj = nn.Linear(ac.hidden_size, ac.hidden_size)
        self.norm2 = nn.LayerNorm(ac.hidden_size, eps=_TORCH_LAYERNORM_EPS)
        self.mlp = MplugOwlVisualAbstractorMLP(ac)

    def forward(self, attended: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        hidden = residual + self.out_proj(attended)
        return hidden + self.mlp(self.norm2(hidden))


class MplugOwlVisualAbstractorAttention(nn.Module):
    def __init__(self, config: MPLUGOwl2Config, ac: MplugOwlVisualAbstractorConfig) -> None:
        super().__init__()
        self.attention = MplugOwlVisualAbstractorMultiHeadAttention(config, ac)
        self.output = MplugOwlVisualAbstractorCrossOutput(ac)
        self.norm1 = nn.LayerNorm(ac.hidden_size, eps=_TORCH_LAYERNORM_EPS)
        self.normk = nn.LayerNorm(ac.hidden_size, eps=_TORCH_LAYERNORM_EPS)

    def forward(self, queries: torch.Tensor, image_tokens: torch.Tensor) -> torch.Tensor:
        h = self.norm1(queries)
        keys = torch.cat([h, self.normk(image_tokens)], dim=1)  # queries also attend to themselves
        # The residual is taken from the *normalised* queries, as in the reference.
        return self.output(self.attention(h, keys), h)


class MplugOwlVisualAbstractorLayer(GradientCheckpointingLayer):
    def __init__(self, config: MPLUGOwl2Config, ac: MplugOwlVisualAbstractorConfig) -> None:
        super().__init__()
        self.crossattention = MplugOwlVisualAbstractorAttention(config, ac)

    def forward(self, queries: torch.Tensor, image_tokens: torch.Tensor) -> torch.Tensor:
        return self.crossattention(queries, image_tokens)


class MplugOwlVisualAbstractorEncoder(nn.Module):
    def __init__(self, config: MPLUGOwl2Config, ac: MplugOwlVisualAbstractorConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList([MplugOwlVisualAbstractorLayer(config, ac) for _ in range(ac.num_hidden_layers)])


class MplugOwlVisualAbstractorModel(nn.Module):
    """Turns (B, N + 1, Dv) vision tokens into (B, Q + 1, H) LLM tokens: Q query outputs, then ``vit_eos``."""

    def __init__(self, config: MPLUGOwl2Config) -> None:
        super().__init__()
        ac = config.abstractor_settings()
        self.query_embeds = nn.Parameter(torch.zeros(1, ac.num_learnable_queries, ac.hidden_size))
        self.encoder = MplugOwlVisualAbstractorEncoder(config, ac)
        self.visual_fc = nn.Linear(ac.hidden_size, config.hidden_size)
        self.vit_eos = nn.Parameter(torch.zeros(1, 1, config.hidden_size))

    def forward(self, image_tokens: torch.Tensor) -> torch.Tensor:
        hidden = self.query_embeds.expand(image_tokens.shape[0], -1, -1).to(image_tokens.dtype)
        for layer in self.encoder.layers:
            hidden = layer(hidden, image_tokens)
        hidden = self.visual_fc(hidden)
        return torch.cat([hidden, self.vit_eos.expand(hidden.shape[0], -1, -1).to(hidden.dtype)], dim=1)
