"""A tiny random PaliGemma, built offline: the real ``PaliGemmaProcessor`` and model classes.

A two-layer SigLIP vision tower and a two-layer Gemma language model behind
``PaliGemmaForConditionalGeneration``, with a ``SiglipImageProcessorPil`` (no torchvision) and a
byte-level BPE tokenizer trained on the Q-Align prompts. The tokenizer is laid out like
PaliGemma's: ``<bos>``/``<eos>``/``<pad>``, an ``<image>`` token, no special tokens added by the
tokenizer itself (the processor writes ``<bos>`` and the suffix's ``<eos>``), and a pair template
that gives the second sequence (the suffix) token type 1. Every level word with its leading space
is one token, as Q-Align needs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from toolkit.models.tiny import training_corpus
from toolkit.qalign import LEVELS

IMAGE_TOKEN = "<image>"
BOS, EOS, PAD, UNK = "<bos>", "<eos>", "<pad>", "<unk>"


def build_tokenizer(vocab_size: int = 512) -> Any:
    """A ``PreTrainedTokenizerFast`` with PaliGemma's special tokens and prefix/suffix token types."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        special_tokens=[PAD, EOS, BOS, UNK, IMAGE_TOKEN],  # Gemma's order: pad 0, eos 1, bos 2
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # PaliGemma prompts end in a newline before the answer.
    corpus = training_corpus() + [f"{line}\n" for line in training_corpus() if line.startswith("USER:")]
    tok.train_from_iterator(corpus, trainer=trainer)
    # Gemma's template with add_bos/add_eos off: nothing added, the suffix is token type 1.
    tok.post_processor = processors.TemplateProcessing(single="$A:0", pair="$A:0 $B:1", special_tokens=[])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        extra_special_tokens={"image_token": IMAGE_TOKEN},
        model_max_length=2048,
    )
    for word in LEVELS:
        if len(fast(" " + word, add_special_tokens=False).input_ids) != 1:
            raise AssertionError(f"tiny PaliGemma tokenizer splits {' ' + word!r}; raise vocab_size")
    return fast


def build_tiny_paligemma(
    out_dir: str | Path | None = None,
    seed: int = 0,
    image_size: int = 32,
    patch_size: int = 8,
    hidden: int = 64,
    layers: int = 2,
    heads: int = 4,
) -> tuple[Any, Any]:
    """``(model, processor)`` of a random tiny PaliGemma in evaluation mode; saved to ``out_dir`` if given.

    ``(image_size / patch_size)**2`` image tokens per image (16 by default).
    """
    import torch
    import transformers
    from transformers import (
        GemmaConfig,
        PaliGemmaConfig,
        PaliGemmaForConditionalGeneration,
        PaliGemmaProcessor,
        SiglipImageProcessorPil,
        SiglipVisionConfig,
    )

    num_patches = (image_size // patch_size) ** 2
    image_processor = SiglipImageProcessorPil(
        size={"height": image_size, "width": image_size},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
        image_seq_length=num_patches,
    )
    tokenizer = build_tokenizer()
    # The processor adds PaliGemma's <loc>/<seg> tokens to the tokenizer: size the vocabulary after it.
    processor = PaliGemmaProcessor(image_processor=image_processor, tokenizer=tokenizer)

    vision = SiglipVisionConfig(
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        image_size=image_size,
        patch_size=patch_size,
        vision_use_head=False,
    )
    text = GemmaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 4,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=1,
        head_dim=hidden // heads,
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    config = PaliGemmaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        vocab_size=len(tokenizer),
        projection_dim=hidden,
        hidden_size=hidden,
    )
    torch.manual_seed(seed)
    model = PaliGemmaForConditionalGeneration(config).eval()
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        bars = transformers.utils.logging.is_progress_bar_enabled()
        transformers.utils.logging.disable_progress_bar()
        try:
            model.save_pretrained(out)
            processor.save_pretrained(out)
        finally:
            if bars:
                transformers.utils.logging.enable_progress_bar()
    return model, processor


def load_tiny_paligemma(folder: str | Path) -> tuple[Any, Any]:
    """``(model, processor)`` reloaded from a folder :func:`build_tiny_paligemma` wrote, with the Auto classes."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(folder)
    model = AutoModelForImageTextToText.from_pretrained(folder).eval()
    return model, processor
