"""A tiny LLaVA-style vision-language model, built from scratch and fully offline.

The toolkit needs *some* model that runs everywhere (CI, laptops without a GPU, air-gapped
machines) to exercise the whole loop: scoring, fine-tuning, saving adapters, evaluating. This
module builds one from nothing: a two-layer CLIP vision tower, a two-layer LLaMA language model
and a byte-level BPE tokenizer trained on the Q-Align prompts, wrapped as a standard
``LlavaForConditionalGeneration`` with a ``LlavaProcessor`` and a chat template. It reloads with
``AutoProcessor`` / ``AutoModelForImageTextToText`` like any Hugging Face checkpoint.

It is a demonstration model: its weights are random until you fine-tune it, and at about 250 k
parameters it can only learn coarse, spatially visible degradations (for example how much of an
image is flat). Real use loads OneAlign (``q-future/one-align``) or another pretrained
vision-language model.

The name ``"tiny"``, given anywhere a model is expected, resolves to :func:`default_model_dir`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from toolkit.errors import ToolkitError
from toolkit.files import give_default_modes
from toolkit.qalign import INPUT_KINDS, LEVELS, TASKS, answer_stem, answer_text, check_task

TINY_MODEL_VERSION = "1"
"""Bump whenever the builder's output changes, so cached copies of older builds are not reused."""

TINY_MODEL_NAME = "tiny"
IMAGE_TOKEN = "<image>"
BOS_TOKEN, EOS_TOKEN, PAD_TOKEN, UNK_TOKEN = "<s>", "</s>", "<pad>", "<unk>"

SYSTEM_SENTENCE = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)

# The tokenizer's training text, frozen: the merges it learns (and so the demo model and its
# figures) depend on these exact sentences. They are the paraphrases of
# ``toolkit.convert.prompts.question_pool`` in template form, "picture" kept for videos.
_QUESTIONS = (
    "How would you rate the {task} of this {input}?",
    "What do you think about the {task} of this {input}?",
    "How do you assess the {task} of this {input}?",
    "Can you rate the {task} of this picture?",
    "Rate the {task} of this {input}.",
    "How would you judge the {task} of this {input}?",
    "Could you evaluate the {task} of this {input}?",
    "What's your opinion on the {task} of this picture?",
    "What is your {task} rating for this {input}?",
)

# A Vicuna-style template, close to the one Q-Align was trained with. The image placeholders go
# where the content list puts them; the assistant turn is "ASSISTANT: <text></s>", so rendering
# a conversation whose assistant text is a prefix gives exactly the generation prompt plus that
# prefix, which keeps scoring and training prompts token-for-token identical.
CHAT_TEMPLATE = (
    "{{- bos_token -}}"
    "{%- for message in messages -%}"
    "{%- if message['content'] is string -%}"
    "{%- set parts = [{'type': 'text', 'text': message['content']}] -%}"
    "{%- else -%}{%- set parts = message['content'] -%}{%- endif -%}"
    "{%- if message['role'] == 'system' -%}"
    "{%- for part in parts -%}{{ part['text'] }}{%- endfor -%}{{ ' ' }}"
    "{%- elif message['role'] == 'user' -%}"
    "{{ 'USER: ' }}"
    "{%- for part in parts -%}"
    "{%- if not loop.first -%}{{ '\n' }}{%- endif -%}"
    "{%- if part['type'] == 'image' -%}" + IMAGE_TOKEN + "{%- else -%}{{ part['text'] }}{%- endif -%}"
    "{%- endfor -%}{{ '\n' }}"
    "{%- elif message['role'] == 'assistant' -%}"
    "{{ 'ASSISTANT: ' }}"
    "{%- for part in parts -%}{{ part['text'] }}{%- endfor -%}"
    "{{ eos_token }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}ASSISTANT:{%- endif -%}"
)


def training_corpus() -> list[str]:
    """The sentences the tokenizer is trained on: every prompt and answer the toolkit writes."""
    lines = [SYSTEM_SENTENCE, "USER:", "ASSISTANT:"]
    for task in map(check_task, TASKS):
        for inp in INPUT_KINDS:
            for q in _QUESTIONS:
                lines.append(f"USER: {q.format(task=task, input=inp)}")
            for word in LEVELS:
                # Repeated so that every level word, with its leading space, is merged into one token.
                lines.extend([f"ASSISTANT: {answer_text(word, task, inp)}"] * 8)
                lines.append(f"{answer_stem(task, inp)} {word}")
    # Score-style answers, for the numeric-score baseline.
    lines.extend(f"The score of the image is {d}." for d in ("1", "2", "3", "4", "5", "0.5", "2.75"))
    return lines


def _build_tokenizer(vocab_size: int):  # -> PreTrainedTokenizerFast
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        special_tokens=[UNK_TOKEN, BOS_TOKEN, EOS_TOKEN, PAD_TOKEN, IMAGE_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(training_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        unk_token=UNK_TOKEN,
        extra_special_tokens={"image_token": IMAGE_TOKEN},
        model_max_length=2048,
    )
    for word in LEVELS:
        ids = fast(" " + word, add_special_tokens=False).input_ids
        if len(ids) != 1:  # a builder bug, not a user error: the corpus or vocabulary is too small
            raise ToolkitError(f"tiny tokenizer splits {' ' + word!r} into {len(ids)} tokens; raise vocab_size")
    return fast


def build_tiny_model(
    out_dir: str | Path,
    seed: int = 0,
    image_size: int = 32,
    patch_size: int = 8,
    vision_hidden: int = 64,
    vision_layers: int = 2,
    text_hidden: int = 64,
    text_layers: int = 2,
    heads: int = 4,
    vocab_size: int = 512,
) -> Path:
    """Build the tiny model, processor and chat template into ``out_dir`` and return it.

    Deterministic for a given ``seed`` and sizes. The defaults give about 250 k parameters and
    16 visual tokens per image (a 4 x 4 grid of 8-pixel patches on a 32-pixel image, padded to
    a square with the CLIP mean colour as Q-Align does).
    """
    import torch
    import transformers
    from transformers import (
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaImageProcessorPil,
        LlavaProcessor,
    )

    if image_size % patch_size:
        raise ToolkitError(f"image_size {image_size} is not a multiple of patch_size {patch_size}")
    out = Path(out_dir)
    tokenizer = _build_tokenizer(vocab_size)
    num_patches = (image_size // patch_size) ** 2

    vision = CLIPVisionConfig(
        hidden_size=vision_hidden,
        intermediate_size=vision_hidden * 2,
        num_hidden_layers=vision_layers,
        num_attention_heads=heads,
        image_size=image_size,
        patch_size=patch_size,
        projection_dim=vision_hidden,
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=text_hidden,
        intermediate_size=text_hidden * 4,
        num_hidden_layers=text_layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        image_seq_length=num_patches,
        vision_feature_select_strategy="default",  # drop CLS: one token per patch
        vision_feature_layer=-1,
        projector_hidden_act="gelu",
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config).eval()

    image_processor = LlavaImageProcessorPil(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        do_pad=True,  # Q-Align's expand2square with the CLIP mean colour
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's class token
        chat_template=CHAT_TEMPLATE,
        image_token=IMAGE_TOKEN,
    )
    out.mkdir(parents=True, exist_ok=True)
    bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.utils.logging.disable_progress_bar()  # a 1 MB write needs no progress bar
    try:
        model.save_pretrained(out)
        processor.save_pretrained(out)
        give_default_modes(out)  # safetensors writes its files 0600
    finally:
        if bars:
            transformers.utils.logging.enable_progress_bar()
    (out / "qalign_tiny.json").write_text(
        json.dumps({"version": TINY_MODEL_VERSION, "seed": seed, "parameters": model.num_parameters()}, indent=1)
    )
    return out


def is_untrained_tiny_model(path: str | Path) -> bool:
    """True for a tiny model as :func:`build_tiny_model` wrote it, before any fine-tuning.

    Its weights are random: LoRA adapters on random weights cannot learn the task, so training
    it needs full mode.
    """
    folder = Path(path)
    return (folder / "qalign_tiny.json").is_file() and not (folder / "qalign_train.json").is_file()


def default_model_dir() -> Path:
    """The embedded default model, built on first use into the cache and reused afterwards.

    The cache folder is ``$QALIGN_CACHE/tiny-<version>`` or ``~/.cache/qalign/tiny-<version>``.
    The build goes to a temporary sibling folder that is renamed into place, so a crash or a
    concurrent build never leaves a half-written model behind.
    """
    root = Path(os.environ.get("QALIGN_CACHE") or Path.home() / ".cache" / "qalign")
    target = root / f"tiny-{TINY_MODEL_VERSION}"
    if (target / "config.json").is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tiny-{TINY_MODEL_VERSION}-", dir=root))
    try:
        build_tiny_model(tmp)
        try:
            tmp.rename(target)
        except OSError:
            # Another process finished first (the target now exists and is complete): use theirs.
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
