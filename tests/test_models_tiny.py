"""The offline tiny model: builds without a network, reloads with the Auto classes, is deterministic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from toolkit.levels import LEVELS
from toolkit.models.tiny import TINY_MODEL_VERSION, build_tiny_model, default_model_dir


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", seed=0)


def test_reloads_with_auto_classes(tiny_dir: Path) -> None:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_dir)
    model = AutoModelForImageTextToText.from_pretrained(tiny_dir)
    n_params = sum(p.numel() for p in model.parameters())
    assert 150_000 < n_params < 400_000
    assert (tiny_dir / "chat_template.jinja").is_file()
    assert processor.chat_template is not None
    assert model.config.image_token_index == processor.tokenizer.convert_tokens_to_ids("<image>")


def test_level_words_are_single_tokens(tiny_dir: Path) -> None:
    from transformers import AutoProcessor

    tok = AutoProcessor.from_pretrained(tiny_dir).tokenizer
    ids = [tok(" " + w, add_special_tokens=False).input_ids for w in LEVELS]
    assert all(len(i) == 1 for i in ids)
    assert len({i[0] for i in ids}) == 5
    # In context, the word after "is" is that same single token.
    for word, (wid,) in zip(LEVELS, ids):
        seq = tok(f"ASSISTANT: The quality of the image is {word}.", add_special_tokens=False).input_ids
        assert seq[-2] == wid


def test_chat_template_renders_the_qalign_prompt(tiny_dir: Path) -> None:
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_dir)
    user = {
        "role": "user",
        "content": [{"type": "text", "text": "How would you rate the quality of this image?"}, {"type": "image"}],
    }
    prompt = processor.apply_chat_template([user], add_generation_prompt=True, tokenize=False)
    assert prompt == "<s>USER: How would you rate the quality of this image?\n<image>\nASSISTANT:"
    answer = {"role": "assistant", "content": [{"type": "text", "text": "The quality of the image is good."}]}
    full = processor.apply_chat_template([user, answer], tokenize=False)
    assert full == prompt + " The quality of the image is good.</s>"


def test_build_is_deterministic(tiny_dir: Path, tmp_path: Path) -> None:
    again = build_tiny_model(tmp_path / "again", seed=0)
    other = build_tiny_model(tmp_path / "other", seed=1)
    for name in ("model.safetensors", "tokenizer.json", "config.json", "processor_config.json"):
        assert (tiny_dir / name).read_bytes() == (again / name).read_bytes(), name
    assert (tiny_dir / "tokenizer.json").read_bytes() == (other / "tokenizer.json").read_bytes()
    assert (tiny_dir / "model.safetensors").read_bytes() != (other / "model.safetensors").read_bytes()


def test_default_model_dir_builds_once_into_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QALIGN_CACHE", str(tmp_path))
    first = default_model_dir()
    assert first == tmp_path / f"tiny-{TINY_MODEL_VERSION}"
    assert json.loads((first / "qalign_tiny.json").read_text())["version"] == TINY_MODEL_VERSION
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    assert default_model_dir() == first
    assert (first / "model.safetensors").stat().st_mtime_ns == stamp
    # Nothing half-built is left next to it.
    assert [p.name for p in tmp_path.iterdir()] == [first.name]


def test_lora_on_the_untrained_tiny_model_warns(tmp_path):
    import json

    import pytest

    from toolkit.models.tiny import build_tiny_model, is_untrained_tiny_model
    from toolkit.training import TrainConfig, train

    base = build_tiny_model(tmp_path / "base", seed=0)
    assert is_untrained_tiny_model(base)
    records = [
        {
            "id": "a",
            "image": "a.png",
            "conversations": [
                {"from": "human", "value": "How would you rate the quality of this image?\n<|image|>"},
                {"from": "gpt", "value": "The quality of the image is good."},
            ],
        }
    ]
    from PIL import Image

    Image.new("RGB", (16, 16), (90, 90, 90)).save(tmp_path / "a.png")
    (tmp_path / "train.json").write_text(json.dumps(records))
    with pytest.warns(UserWarning, match="--mode full"):
        train(
            TrainConfig(
                model=str(base),
                data=str(tmp_path / "train.json"),
                images=str(tmp_path),
                out=str(tmp_path / "lora"),
                mode="lora",
                max_steps=1,
                batch_size=1,
                device="cpu",
            )
        )
    full = tmp_path / "full"
    train(
        TrainConfig(
            model=str(base),
            data=str(tmp_path / "train.json"),
            images=str(tmp_path),
            out=str(full),
            mode="full",
            max_steps=1,
            batch_size=1,
            device="cpu",
        )
    )
    assert not is_untrained_tiny_model(full)
