"""Tiny random builds of the vision-language families the toolkit supports, fully offline.

``build_tiny_family(name, out_dir, seed)`` writes a checkpoint folder of family ``name`` (a
:data:`toolkit.models.families.FAMILIES` entry) that ``load_backbone`` loads like any other, a few
hundred thousand random parameters: for trying the toolkit's paths through a family (scoring,
native video, fine-tuning recipes) on a CPU in seconds, not for its scores.

Each builder writes a checkpoint folder with the family's real config class (tiny sizes, random
weights), its real processor class (PIL image processor, no video processor: the image-only
path the toolkit loads when torchvision is absent), a byte-level BPE tokenizer trained on the
Q-Align prompts with the family's special tokens (so every level word is one token), and a
chat template written in the structure of the family's published one (PaliGemma, prompted
without a template, has none). The templates are short
renderings of the same turn layout (role markers, where images go, end-of-turn tokens), not
copies: they cover the text + image turns Q-Align uses. Tags never trim whitespace (no
``{%-``), so every newline written is rendered.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from toolkit.errors import InputError
from toolkit.models.families import image_only_processor_class
from toolkit.models.tiny import training_corpus

Builder = Callable[[Path], Path]

# ------------------------------------------------------------------ chat templates (published structure)

# Qwen2-VL / Qwen2.5-VL: ChatML with a default system turn; an image is
# <|vision_start|><|image_pad|><|vision_end|> in place.
QWEN2_VL_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% else %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Qwen3-VL: the same ChatML turns without the default system turn.
QWEN3_VL_TEMPLATE = QWEN2_VL_TEMPLATE.replace(
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}",
    "",
)

# Qwen3.5: ChatML; the assistant turn after the last user turn carries an (empty) think block,
# and the non-thinking generation prompt opens and closes it.
QWEN3_5_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['role'] == 'assistant' %}<think>\n\n</think>\n\n{% endif %}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% else %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n\n</think>\n\n{% endif %}"
)

# Idefics3 / SmolVLM2: "User:<image>text<end_of_utterance>\nAssistant: text<end_of_utterance>\n"
# (a colon without a space when the turn starts with an image). Idefics3 opens with BOS, SmolVLM
# with <|im_start|>.
_IDEFICS_TURNS = (
    "{% for message in messages %}"
    "{{ message['role'] | capitalize }}"
    "{% if message['content'][0]['type'] == 'image' %}{{ ':' }}{% else %}{{ ': ' }}{% endif %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<image>{% else %}{{ part['text'] }}{% endif %}"
    "{% endfor %}<end_of_utterance>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)
IDEFICS3_TEMPLATE = "{{ bos_token }}" + _IDEFICS_TURNS
SMOLVLM_TEMPLATE = "<|im_start|>" + _IDEFICS_TURNS

# InternVL (-hf checkpoints): ChatML, an image is "<IMG_CONTEXT>\n" where it stands.
INTERNVL_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<IMG_CONTEXT>\n"
    "{% elif part['type'] == 'video' %}<video>\n"
    "{% else %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# LLaVA-OneVision (Qwen2 language model): "<|im_start|>role " + images first, then "\n" + each text.
LLAVA_ONEVISION_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }} "
    "{% for part in message['content'] | selectattr('type', 'equalto', 'image') %}<image>{% endfor %}"
    "{% for part in message['content'] | selectattr('type', 'equalto', 'video') %}<video>{% endfor %}"
    "{% for part in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ '\n' + part['text'] }}{% endfor %}<|im_end|>"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Gemma 3: BOS, "<start_of_turn>user\n", assistant is "model", an image is <start_of_image>,
# text trimmed, "<end_of_turn>\n" after each turn.
GEMMA3_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "<start_of_turn>{{ role }}\n"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<start_of_image>{% else %}{{ part['text'] | trim }}{% endif %}"
    "{% endfor %}<end_of_turn>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)

# ------------------------------------------------------------------ shared pieces


def bpe_tokenizer(
    special: list[str],
    named: dict[str, str],
    eos: str,
    pad: str,
    bos: str | None = None,
    vocab_size: int = 600,
    unk: str | None = None,
    extra_corpus: Sequence[str] = (),
) -> Any:
    """A byte-level BPE tokenizer trained on the Q-Align prompts (and ``extra_corpus``), with
    ``special`` tokens kept whole and ``named`` ones exposed as attributes (``tokenizer.image_token`` ...).
    Special tokens take the first ids: ``eos``, ``pad``, ``bos``, ``unk``, then the others."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=unk))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    first = [eos, pad, *([bos] if bos else []), *([unk] if unk else [])]
    all_special = list(dict.fromkeys([*first, *special, *named.values()]))
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        special_tokens=all_special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = training_corpus() + ["User: Assistant: user assistant system model", *extra_corpus]
    tok.train_from_iterator(corpus, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=eos,
        pad_token=pad,
        bos_token=bos,
        unk_token=unk,
        extra_special_tokens=named,
        model_max_length=4096,
    )


def _text(tokenizer: Any, **extra: Any) -> dict[str, Any]:
    """Tiny language-model sizes (two layers, hidden 64) with the tokenizer's special ids."""
    return {
        "vocab_size": len(tokenizer),
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 4096,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        **extra,
    }


def _save(out: Path, config: Any, processor: Any, seed: int, zero_initialised: tuple[str, ...] = ()) -> Path:
    """Random weights (``zero_initialised`` parameters get random values too: a zero projector
    would hide the image from the language model), saved with the processor into ``out``."""
    import torch
    from transformers import AutoModelForImageTextToText

    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(config).eval()
    with torch.no_grad():
        for name in zero_initialised:
            model.get_parameter(name).normal_(std=0.5)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    (out / "tiny_family.json").write_text(json.dumps({"parameters": model.num_parameters()}))
    return out


def _processor(cls: type, **kwargs: Any) -> Any:
    """The family's processor class, without a video processor (built without torchvision)."""
    return image_only_processor_class(cls)(**kwargs)


# ------------------------------------------------------------------ Qwen

_QWEN_SPECIAL = ["<|im_start|>", "<|im_end|>"]
_QWEN_NAMED = {
    "image_token": "<|image_pad|>",
    "video_token": "<|video_pad|>",
    "vision_start_token": "<|vision_start|>",
    "vision_end_token": "<|vision_end|>",
}


def _qwen_tokenizer() -> Any:
    return bpe_tokenizer(_QWEN_SPECIAL, _QWEN_NAMED, eos="<|im_end|>", pad="<|endoftext|>")


def _qwen_ids(tok: Any) -> dict[str, Any]:
    return {
        "image_token_id": tok.convert_tokens_to_ids("<|image_pad|>"),
        "video_token_id": tok.convert_tokens_to_ids("<|video_pad|>"),
        "vision_start_token_id": tok.convert_tokens_to_ids("<|vision_start|>"),
        "vision_end_token_id": tok.convert_tokens_to_ids("<|vision_end|>"),
    }


def _qwen_image_processor(patch_size: int) -> Any:
    from transformers import Qwen2VLImageProcessorPil

    unit = patch_size * 2  # one merged token covers 2 x 2 patches
    return Qwen2VLImageProcessorPil(
        size={"shortest_edge": unit * unit * 4, "longest_edge": unit * unit * 16},
        patch_size=patch_size,
        merge_size=2,
        temporal_patch_size=2,
    )


def build_qwen2_vl(out: Path, seed: int = 0) -> Path:
    from transformers import Qwen2VLConfig, Qwen2VLProcessor

    tok = _qwen_tokenizer()
    config = Qwen2VLConfig(
        text_config=_text(
            tok, rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]}
        ),
        vision_config={"depth": 2, "embed_dim": 32, "hidden_size": 64, "num_heads": 2, "patch_size": 14},
        **_qwen_ids(tok),
    )
    processor = _processor(
        Qwen2VLProcessor, image_processor=_qwen_image_processor(14), tokenizer=tok, chat_template=QWEN2_VL_TEMPLATE
    )
    return _save(out, config, processor, seed)


def build_qwen2_5_vl(out: Path, seed: int = 0) -> Path:
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLProcessor

    tok = _qwen_tokenizer()
    config = Qwen2_5_VLConfig(
        text_config=_text(
            tok, rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]}
        ),
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": 64,
            "patch_size": 14,
            "window_size": 56,
            "fullatt_block_indexes": [1],
        },
        **_qwen_ids(tok),
    )
    processor = _processor(
        Qwen2_5_VLProcessor, image_processor=_qwen_image_processor(14), tokenizer=tok, chat_template=QWEN2_VL_TEMPLATE
    )
    return _save(out, config, processor, seed)


_QWEN3_VISION = {
    "depth": 2,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_heads": 2,
    "out_hidden_size": 64,
    "patch_size": 16,
    "num_position_embeddings": 16,
}
_QWEN3_ROPE = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [4, 2, 2], "mrope_interleaved": True}


def build_qwen3_vl(out: Path, seed: int = 0) -> Path:
    from transformers import Qwen3VLConfig, Qwen3VLProcessor

    tok = _qwen_tokenizer()
    config = Qwen3VLConfig(
        text_config=_text(tok, head_dim=16, rope_parameters=_QWEN3_ROPE),
        vision_config={**_QWEN3_VISION, "deepstack_visual_indexes": [0, 1]},
        **_qwen_ids(tok),
    )
    processor = _processor(
        Qwen3VLProcessor, image_processor=_qwen_image_processor(16), tokenizer=tok, chat_template=QWEN3_VL_TEMPLATE
    )
    return _save(out, config, processor, seed)


def build_qwen3_5(out: Path, seed: int = 0) -> Path:
    from transformers import Qwen3_5Config, Qwen3VLProcessor

    tok = _qwen_tokenizer()
    config = Qwen3_5Config(
        text_config=_text(
            tok,
            head_dim=16,
            rope_parameters={**_QWEN3_ROPE, "partial_rotary_factor": 1.0},
            layer_types=["linear_attention", "full_attention"],
            linear_key_head_dim=16,
            linear_value_head_dim=16,
            linear_num_key_heads=2,
            linear_num_value_heads=4,
        ),
        vision_config=_QWEN3_VISION,
        **_qwen_ids(tok),
    )
    processor = _processor(
        Qwen3VLProcessor, image_processor=_qwen_image_processor(16), tokenizer=tok, chat_template=QWEN3_5_TEMPLATE
    )
    return _save(out, config, processor, seed)


# ------------------------------------------------------------------ Idefics3 / SmolVLM2

_IDEFICS_NAMED = {
    "image_token": "<image>",
    "fake_image_token": "<fake_token_around_image>",
    "global_image_token": "<global-img>",
    "end_of_utterance_token": "<end_of_utterance>",
}
_ROWCOL = [f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)]


def _idefics_parts(image_cls: type, family_bos: str | None) -> tuple[Any, Any, dict[str, Any]]:
    tok = bpe_tokenizer(
        ["<|im_start|>", *_ROWCOL],
        _IDEFICS_NAMED,
        eos="<end_of_utterance>",
        pad="<|endoftext|>",
        bos=family_bos,
    )
    # 32-pixel images, 8-pixel patches, pixel shuffle by 2: 4 image tokens, no splitting.
    image_processor = image_cls(
        size={"longest_edge": 32},
        max_image_size={"longest_edge": 32},
        do_image_splitting=False,
    )
    vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}
    vision.update({"image_size": 32, "patch_size": 8})
    return tok, image_processor, vision


def build_idefics3(out: Path, seed: int = 0) -> Path:
    from transformers import Idefics3Config, Idefics3ImageProcessorPil, Idefics3Processor

    tok, image_processor, vision = _idefics_parts(Idefics3ImageProcessorPil, "<|begin_of_text|>")
    config = Idefics3Config(
        text_config={**_text(tok), "model_type": "llama"},
        vision_config=vision,
        scale_factor=2,
        image_token_id=tok.convert_tokens_to_ids("<image>"),
    )
    processor = Idefics3Processor(
        image_processor=image_processor, tokenizer=tok, image_seq_len=4, chat_template=IDEFICS3_TEMPLATE
    )
    return _save(out, config, processor, seed)


def build_smolvlm(out: Path, seed: int = 0) -> Path:
    from transformers import SmolVLMConfig, SmolVLMImageProcessorPil, SmolVLMProcessor

    tok, image_processor, vision = _idefics_parts(SmolVLMImageProcessorPil, None)
    config = SmolVLMConfig(
        text_config={**_text(tok), "model_type": "llama"},
        vision_config=vision,
        scale_factor=2,
        image_token_id=tok.convert_tokens_to_ids("<image>"),
    )
    processor = _processor(
        SmolVLMProcessor,
        image_processor=image_processor,
        tokenizer=tok,
        image_seq_len=4,
        chat_template=SMOLVLM_TEMPLATE,
    )
    return _save(out, config, processor, seed)


# ------------------------------------------------------------------ InternVL, LLaVA-OneVision, Gemma 3


def build_internvl(out: Path, seed: int = 0) -> Path:
    from transformers import GotOcr2ImageProcessorPil, InternVLConfig, InternVLProcessor

    named = {
        "start_image_token": "<img>",
        "end_image_token": "</img>",
        "context_image_token": "<IMG_CONTEXT>",
        "video_token": "<video>",
    }
    tok = bpe_tokenizer(["<|im_start|>", "<|im_end|>"], named, eos="<|im_end|>", pad="<|endoftext|>")
    # InternVL names the ids of these tokens as tokenizer attributes too.
    for attr, token in named.items():
        setattr(tok, attr + "_id", tok.convert_tokens_to_ids(token))
    config = InternVLConfig(
        text_config={**_text(tok), "model_type": "qwen2"},
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": [32, 32],
            "patch_size": [8, 8],
        },
        image_token_id=tok.convert_tokens_to_ids("<IMG_CONTEXT>"),
        image_seq_length=4,
        downsample_ratio=0.5,
    )
    image_processor = GotOcr2ImageProcessorPil(
        size={"height": 32, "width": 32}, crop_to_patches=False, min_patches=1, max_patches=1
    )
    processor = _processor(
        InternVLProcessor,
        image_processor=image_processor,
        tokenizer=tok,
        image_seq_length=4,
        chat_template=INTERNVL_TEMPLATE,
    )
    return _save(out, config, processor, seed)


def build_llava_onevision(out: Path, seed: int = 0) -> Path:
    from transformers import LlavaOnevisionConfig, LlavaOnevisionImageProcessorPil, LlavaOnevisionProcessor

    tok = bpe_tokenizer(
        ["<|im_start|>", "<|im_end|>"],
        {"image_token": "<image>", "video_token": "<video>"},
        eos="<|im_end|>",
        pad="<|endoftext|>",
    )
    config = LlavaOnevisionConfig(
        text_config={**_text(tok), "model_type": "qwen2"},
        vision_config={
            "model_type": "siglip_vision_model",
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 8,
        },
        image_token_index=tok.convert_tokens_to_ids("<image>"),
        video_token_index=tok.convert_tokens_to_ids("<video>"),
        image_grid_pinpoints=[[32, 32], [32, 64], [64, 32]],
        vision_aspect_ratio="anyres_max_9",
    )
    image_processor = LlavaOnevisionImageProcessorPil(
        size={"height": 32, "width": 32}, image_grid_pinpoints=[[32, 32], [32, 64], [64, 32]]
    )
    processor = _processor(
        LlavaOnevisionProcessor,
        image_processor=image_processor,
        tokenizer=tok,
        num_image_tokens=16,
        vision_feature_select_strategy="full",
        vision_aspect_ratio="anyres_max_9",
        chat_template=LLAVA_ONEVISION_TEMPLATE,
    )
    return _save(out, config, processor, seed)


def build_gemma3(out: Path, seed: int = 0) -> Path:
    from transformers import Gemma3Config, Gemma3ImageProcessorPil, Gemma3Processor

    named = {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"}
    tok = bpe_tokenizer(["<start_of_turn>", "<end_of_turn>"], named, eos="<eos>", pad="<pad>", bos="<bos>")
    for attr, token in named.items():
        setattr(tok, attr + "_id", tok.convert_tokens_to_ids(token))
    config = Gemma3Config(
        text_config={
            **_text(tok),
            "head_dim": 16,
            "query_pre_attn_scalar": 16,
            "sliding_window": 64,
            "layer_types": ["sliding_attention", "full_attention"],
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 8,
        },
        mm_tokens_per_image=4,
        boi_token_index=tok.convert_tokens_to_ids("<start_of_image>"),
        eoi_token_index=tok.convert_tokens_to_ids("<end_of_image>"),
        image_token_index=tok.convert_tokens_to_ids("<image_soft_token>"),
    )
    image_processor = Gemma3ImageProcessorPil(size={"height": 32, "width": 32}, do_pan_and_scan=False)
    processor = Gemma3Processor(
        image_processor=image_processor, tokenizer=tok, image_seq_length=4, chat_template=GEMMA3_TEMPLATE
    )
    return _save(out, config, processor, seed, ("model.multi_modal_projector.mm_input_projection_weight",))


# ------------------------------------------------------------------ PaliGemma


def build_paligemma(out: Path, seed: int = 0) -> Path:
    """PaliGemma, prompted without a chat template: a SigLIP tower and a Gemma decoder behind
    ``PaliGemmaForConditionalGeneration``, 16 image tokens per 32-pixel image.

    The tokenizer is laid out like PaliGemma's: ``<bos>``/``<eos>``/``<pad>``/``<unk>`` and an
    ``<image>`` token, nothing added by the tokenizer itself (the processor writes ``<bos>`` and the
    suffix's ``<eos>``), and a pair template that gives the second sequence (the suffix) token type 1.
    """
    from tokenizers import processors
    from transformers import PaliGemmaConfig, PaliGemmaProcessor, SiglipImageProcessorPil

    # PaliGemma prompts end in a newline before the answer.
    prompts = [f"{line}\n" for line in training_corpus() if line.startswith("USER:")]
    tok = bpe_tokenizer(
        [], {"image_token": "<image>"}, eos="<eos>", pad="<pad>", bos="<bos>", unk="<unk>", extra_corpus=prompts
    )
    # Gemma's template with add_bos/add_eos off: nothing added, the suffix is token type 1.
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="$A:0", pair="$A:0 $B:1", special_tokens=[]
    )
    image_processor = SiglipImageProcessorPil(
        size={"height": 32, "width": 32}, image_mean=[0.5] * 3, image_std=[0.5] * 3, image_seq_length=16
    )
    # The processor adds PaliGemma's <loc>/<seg> tokens to the tokenizer: size the vocabulary after it.
    processor = PaliGemmaProcessor(image_processor=image_processor, tokenizer=tok)
    text = {**_text(tok), "head_dim": 16, "num_key_value_heads": 1, "intermediate_size": 256}
    vision = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4}
    config = PaliGemmaConfig(
        vision_config={**vision, "image_size": 32, "patch_size": 8, "vision_use_head": False},
        text_config={**text, "model_type": "gemma"},
        image_token_index=tok.convert_tokens_to_ids("<image>"),
        vocab_size=len(tok),
        projection_dim=64,
        hidden_size=64,
    )
    return _save(out, config, processor, seed)


BUILDERS: dict[str, Callable[..., Path]] = {
    "qwen3_5": build_qwen3_5,
    "qwen3_vl": build_qwen3_vl,
    "qwen2_5_vl": build_qwen2_5_vl,
    "qwen2_vl": build_qwen2_vl,
    "smolvlm": build_smolvlm,
    "idefics3": build_idefics3,
    "internvl": build_internvl,
    "llava_onevision": build_llava_onevision,
    "gemma3": build_gemma3,
    "paligemma": build_paligemma,
}
"""Family name (as in :data:`toolkit.models.families.FAMILIES`) -> tiny builder."""


def build_tiny_family(name: str, out_dir: str | Path, seed: int = 0) -> Path:
    """Write a tiny random model of family ``name`` to ``out_dir`` (created) and return the folder."""
    if name not in BUILDERS:
        raise InputError(f"no tiny build of the model family {name!r}; available: {', '.join(BUILDERS)}")
    return BUILDERS[name](Path(out_dir), seed)
