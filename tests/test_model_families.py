"""Every vision-language family of the family table as a Q-Align backbone, on tiny random builds.

Each family is built once per session (:mod:`toolkit.models.tiny_families`) with its real config and
processor classes, then scored (probabilities, batching, video frames), trained with the generic
and the family's own recipes, reloaded, merged, and checked for which modules each recipe trains.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from toolkit.cli import app
from toolkit.errors import InputError
from toolkit.levels import LEVELS
from toolkit.models.families import FAMILIES, family_of, get_family, image_only_processor_class
from toolkit.models.hf import HFVisionLanguageBackbone
from toolkit.models.loading import load_backbone
from toolkit.models.tiny_families import BUILDERS
from toolkit.scoring.engine import Scorer
from toolkit.training import TrainConfig, train
from toolkit.training.lora import prepare_trainable
from toolkit.training.recipes import RECIPE_FAMILIES, RECIPES, check_recipe_fits

from fixtures_training import write_toy

FAMILY_NAMES = list(BUILDERS)


@pytest.fixture(scope="session")
def toy_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight rated toy images (the images sit in ``img/`` beside the records)."""
    return write_toy(tmp_path_factory.mktemp("family-data"), "train", 8, seed=5)


@pytest.fixture(scope="session")
def lora_run(family_model: Callable[[str], Path], toy_data: Path, tmp_path_factory: pytest.TempPathFactory):
    """``lora_run(name)``: (model folder, adapter folder, trained backbone) of a short hf-lora run."""
    runs: dict[str, tuple] = {}

    def get(name: str) -> tuple:
        if name not in runs:
            out = tmp_path_factory.mktemp(f"lora-{name}") / "adapter"
            result = _train(family_model(name), toy_data, out, "hf-lora")
            runs[name] = (family_model(name), out, result)
        return runs[name]

    return get


def _train(model: Path, data: Path, out: Path, recipe: str, steps: int = 2):
    # A large learning rate and rank-4 adapters: two steps move the logits visibly.
    return train(
        TrainConfig(
            recipe=recipe,
            model=str(model),
            data=str(data),
            out=str(out),
            max_steps=steps,
            batch_size=2,
            lr=5e-3,
            lora_r=4,
            lora_alpha=8,
            dtype="float32",
            device="cpu",
            cpu_threads=1,
        )
    )


def _images(n: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    # Different sizes and aspect ratios, so padding and resizing differ between rows.
    return [Image.fromarray(rng.integers(0, 256, (24 + 9 * i, 40 - 5 * i, 3), dtype=np.uint8)) for i in range(n)]


def _logits(backbone, visuals, kind: str = "image") -> torch.Tensor:
    with torch.no_grad():
        return backbone.level_logits(backbone.scoring_batch(visuals, "quality", kind))


# ------------------------------------------------------------------ the table


def test_every_family_has_one_entry_and_a_tiny_build() -> None:
    names = [f.name for f in FAMILIES]
    assert len(names) == len(set(names))
    assert set(BUILDERS) | {"llava"} == set(names)  # the tiny LLaVA model has tests of its own
    model_types = [t for f in FAMILIES for t in f.model_types]
    assert len(model_types) == len(set(model_types))
    assert family_of("qwen3_vl") is get_family("qwen3_vl") and family_of("mplug_owl2") is None
    with pytest.raises(InputError, match="unknown model family"):
        get_family("nope")
    for family in FAMILIES:
        for recipe in (family.lora_recipe, family.full_recipe):
            assert recipe in RECIPES and family.name in RECIPE_FAMILIES.get(recipe, (family.name,))


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_the_table_places_every_parameter(name: str, family_model: Callable[[str], Path]) -> None:
    # Each parameter is in exactly one of: vision encoder, projector, language model, output head.
    backbone = load_backbone(family_model(name))
    family = family_of(backbone.model.config.model_type)
    assert family is not None and family.name == name
    parts = {"vision": family.vision, "projector": family.projector, "lm": (family.language_model,)}
    seen = {k: 0 for k in parts}
    for pname, _ in backbone.model.named_parameters():
        path = pname.removeprefix("model.")
        owners = [k for k, mods in parts.items() if any(path == m or path.startswith(m + ".") for m in mods)]
        assert owners in ([k] for k in parts) or path.startswith("lm_head") or path in family.loose_parameters, pname
        for k in owners:
            seen[k] += 1
    assert all(seen.values()), seen


# ------------------------------------------------------------------ scoring


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_scoring_batch_equals_one_at_a_time(name: str, family_model: Callable[[str], Path]) -> None:
    backbone = load_backbone(family_model(name))
    assert isinstance(backbone, HFVisionLanguageBackbone)
    assert [backbone.tokenizer.decode([i]) for i in backbone.level_token_ids] == [" " + w for w in LEVELS]
    assert backbone.scoring_prompt("quality", "image").endswith("The quality of the image is")
    imgs = _images(4, seed=1)
    visuals = [[imgs[0]], [imgs[1]], [imgs[2]], [imgs[3]]]
    together = _logits(backbone, visuals)
    alone = torch.cat([_logits(backbone, [v]) for v in visuals])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=0)
    assert (together[0] - together[1]).abs().max() > 1e-6  # the image reaches the answer position


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_scorer_gives_probabilities(name: str, family_model: Callable[[str], Path], toy_data: Path) -> None:
    scorer = Scorer(load_backbone(family_model(name)), batch_size=3, progress=False)
    df = scorer.score([toy_data.parent / "img"], task="quality")
    probs = df[[f"p_{w}" for w in LEVELS]].to_numpy()
    assert len(df) == 8 and (df["error"].fillna("") == "").all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert df["score"].between(1, 5).all()


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_videos_as_frames_score(name: str, family_model: Callable[[str], Path]) -> None:
    backbone = load_backbone(family_model(name))
    imgs = _images(4, seed=2)
    assert backbone.scoring_prompt("quality", "video", n_images=3).endswith("The quality of the video is")
    visuals = [imgs[:3], [imgs[3]], imgs[1:]]  # 3, 1 and 3 frames in one batch
    together = _logits(backbone, visuals, "video")
    alone = torch.cat([_logits(backbone, [v], "video") for v in visuals])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=0)
    probs = together.softmax(-1)
    torch.testing.assert_close(probs.sum(-1), torch.ones(3), atol=1e-6, rtol=0)
    # Frames are attended in order: reversing a video changes its logits.
    assert (_logits(backbone, [imgs[:3][::-1]], "video") - alone[0]).abs().max() > 1e-6


# ------------------------------------------------------------------ training


def _trainable(model: torch.nn.Module) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def _parameter_names(model: torch.nn.Module, modules: tuple[str, ...]) -> set[str]:
    return {
        n
        for n, _ in model.named_parameters()
        if any(n.removeprefix("model.") == m or n.removeprefix("model.").startswith(m + ".") for m in modules)
    }


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_recipes_train_the_right_modules(name: str, family_model: Callable[[str], Path]) -> None:
    family = get_family(name)
    base = load_backbone(family_model(name)).model
    vision, projector = _parameter_names(base, family.vision), _parameter_names(base, family.projector)
    n_layers = base.config.get_text_config().num_hidden_layers
    assert vision and projector
    for recipe in dict.fromkeys(("hf-lora", family.lora_recipe)):
        model = prepare_trainable(load_backbone(family_model(name)).model, TrainConfig(recipe=recipe))
        trainable = _trainable(model)
        lora = {n for n in trainable if ".lora_" in n}
        wrapped = {re.sub(r"\.lora_[AB]\.default\.weight$", "", n).removeprefix("base_model.model.") for n in lora}
        # LoRA only on the language model's decoder layers, in every layer, on attention (and the
        # MLP where the recipe says so); never on the vision encoder or the projector.
        assert all(f".{family.language_model}.layers." in w for w in wrapped), recipe
        assert {int(w.split(".layers.")[1].split(".")[0]) for w in wrapped} == set(range(n_layers))
        kinds = {w.split(".layers.")[1].split(".")[1] for w in wrapped}
        with_mlp = RECIPES[recipe]["lora_target_modules"] == "@lm-attention-mlp"
        assert kinds == ({"self_attn", "mlp"} if with_mlp else {"self_attn"}) | (
            {"linear_attn"} if name == "qwen3_5" else set()
        ), recipe
        # The projector (every merger of Qwen3-VL's DeepStack too) trains in full; the vision encoder is frozen.
        rest = {n.replace(".modules_to_save.default", "") for n in trainable - lora}
        assert {n.removeprefix("base_model.model.") for n in rest} == projector, recipe
        assert not any(n.removeprefix("base_model.model.") in vision for n in trainable)
    for recipe in dict.fromkeys(("hf-full", family.full_recipe)):
        model = prepare_trainable(load_backbone(family_model(name)).model, TrainConfig(recipe=recipe))
        assert _trainable(model) == {n for n, _ in model.named_parameters()} - vision, recipe


@pytest.mark.parametrize("name", FAMILY_NAMES)
@pytest.mark.parametrize("recipe", ["hf-lora", "hf-full"])
def test_recipes_train_and_the_result_scores(
    name: str, recipe: str, family_model: Callable[[str], Path], lora_run, toy_data: Path, tmp_path: Path
) -> None:
    model = family_model(name)
    if recipe == "hf-lora":
        model, out, result = lora_run(name)
        reloaded = load_backbone(model, adapter=out)
    else:
        out = tmp_path / "full"
        result = _train(model, toy_data, out, recipe)
        reloaded = load_backbone(out)
        assert (out / "config.json").is_file() and family_of(reloaded.model.config.model_type) is get_family(name)
    assert len(result.losses) == 2 and all(np.isfinite(result.losses))
    images = _images(3, seed=3)
    visuals = [[im] for im in images]
    result.backbone.model.eval()
    trained = _logits(result.backbone, visuals)
    torch.testing.assert_close(_logits(reloaded, visuals), trained, atol=1e-5, rtol=0)
    assert (trained - _logits(load_backbone(family_model(name)), visuals)).abs().max() > 1e-4  # it learned


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_qalign_merge_folds_the_adapter_in(name: str, lora_run, tmp_path: Path) -> None:
    model, adapter, _ = lora_run(name)
    out = tmp_path / "merged"
    res = CliRunner().invoke(app, ["merge", "--adapter", str(adapter), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert not (out / "adapter_config.json").exists()
    visuals = [[im] for im in _images(2, seed=4)]
    merged = load_backbone(out)
    torch.testing.assert_close(
        _logits(merged, visuals), _logits(load_backbone(model, adapter=adapter), visuals), atol=1e-5, rtol=0
    )


def test_a_family_recipe_refuses_another_family() -> None:
    check_recipe_fits("qwen-vl-lora", "qwen3_5")
    check_recipe_fits("smolvlm-lora", "idefics3")
    with pytest.raises(
        InputError, match="'qwen-vl-lora' is for .* not 'smolvlm'; use 'smolvlm-lora' or 'smolvlm-full'"
    ):
        check_recipe_fits("qwen-vl-lora", "smolvlm")
    with pytest.raises(InputError, match="not 'llava'; use 'hf-lora' or 'hf-full'"):
        check_recipe_fits("internvl-full", "llava")
    with pytest.raises(InputError, match="onealign-lora"):
        check_recipe_fits("gemma3-lora", "mplug_owl2")


# ------------------------------------------------------------------ loading and its errors


def test_a_missing_processor_package_is_one_line(
    family_model: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers.models.smolvlm import processing_smolvlm

    monkeypatch.setattr(processing_smolvlm, "num2words", None)  # as when num2words is not installed
    with pytest.raises(InputError) as err:
        load_backbone(family_model("smolvlm"))
    message = str(err.value)
    assert "\n" not in message and "'num2words'" in message and "pip install 'qalign-toolkit[vlm]'" in message


def test_a_missing_module_is_one_line(family_model: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch) -> None:
    import transformers

    def needs_torchvision(*args: object, **kwargs: object) -> None:
        raise ModuleNotFoundError("No module named 'torchvision'", name="torchvision")

    monkeypatch.setattr(transformers.AutoModelForImageTextToText, "from_pretrained", needs_torchvision)
    with pytest.raises(InputError, match=r"needs the Python package 'torchvision'; install it with pip install"):
        load_backbone(family_model("qwen2_vl"))


def test_the_image_only_processor_keeps_its_family_class(family_model: Callable[[str], Path]) -> None:
    from transformers import Qwen2VLProcessor

    processor = load_backbone(family_model("qwen2_vl")).processor
    assert isinstance(processor, Qwen2VLProcessor) and type(processor).__name__ == "Qwen2VLProcessor"
    assert not hasattr(processor, "video_processor")
    assert image_only_processor_class(Qwen2VLProcessor) is type(processor)  # one class per family
    assert "video_processor" not in type(processor).get_attributes()


def test_paligemma_loads_its_own_backbone(family_model: Callable[[str], Path]) -> None:
    paligemma = pytest.importorskip("toolkit.models.paligemma")
    from toolkit.models.families import backbone_class

    assert backbone_class(get_family("paligemma")) is paligemma.PaliGemmaBackbone
    assert type(load_backbone(family_model("paligemma"))) is paligemma.PaliGemmaBackbone


def test_a_backbone_module_not_installed_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    from toolkit.models.families import backbone_class

    family = replace(get_family("paligemma"), backbone="toolkit.models.nowhere.Backbone")
    with pytest.raises(InputError, match=r"^the paligemma backbone toolkit.models.nowhere.Backbone is not installed$"):
        backbone_class(family)


# ------------------------------------------------------------------ native video (the Qwen-VL models)

NATIVE_VIDEO = ["qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_5"]


@pytest.mark.parametrize("name", ["qwen2_vl", "qwen2_5_vl"])  # Qwen3 writes the frame times besides
def test_native_video_of_two_equal_frames_is_that_frame(name: str, family_model: Callable[[str], Path]) -> None:
    # A temporal patch pairs two frames where an image patch holds two copies of one: the same input.
    native = load_backbone(family_model(name), native_video=True)
    assert "<|video_pad|>" in native.scoring_prompt("quality", "video", 3)
    (img,) = _images(1, seed=6)
    frames = load_backbone(family_model(name))
    torch.testing.assert_close(
        _logits(native, [[img, img]], "video"), _logits(frames, [[img]], "video"), atol=1e-6, rtol=0
    )


@pytest.mark.parametrize("name", NATIVE_VIDEO)
def test_native_videos_batch_and_keep_their_order(name: str, family_model: Callable[[str], Path]) -> None:
    native = load_backbone(family_model(name), native_video=True)
    imgs = _images(4, seed=7)
    visuals = [imgs[:3], [imgs[3]], imgs]  # 3 frames (the last repeated to pair it), 1, 4
    together = _logits(native, visuals, "video")
    alone = torch.cat([_logits(native, [v], "video") for v in visuals])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=0)
    assert (_logits(native, [imgs[:3][::-1]], "video") - alone[0]).abs().max() > 1e-6
    batch = native.scoring_batch(visuals, "quality", "video")
    assert batch["video_grid_thw"][:, 0].tolist() == [2, 1, 2] and "pixel_values" not in batch
    if name in ("qwen3_vl", "qwen3_5"):  # each frame pair's mean time before its tokens, at 1 frame a second
        text = native.tokenizer.decode(batch["input_ids"][2])
        assert [m for m in re.findall(r"<[\d.]+ seconds>", text)] == ["<0.5 seconds>", "<2.5 seconds>"]
        assert re.findall(r"<[\d.]+ seconds>", native.tokenizer.decode(batch["input_ids"][0])) == [
            "<0.5 seconds>",
            "<2.0 seconds>",  # the third frame, paired with itself
        ]
    # Still images are unaffected by the switch.
    frames = load_backbone(family_model(name))
    torch.testing.assert_close(_logits(native, [[imgs[0]]]), _logits(frames, [[imgs[0]]]), atol=0, rtol=0)


@pytest.mark.parametrize("name", NATIVE_VIDEO)
def test_native_video_training_batch_matches_scoring(name: str, family_model: Callable[[str], Path]) -> None:
    from toolkit.models.base import TrainingExample

    native = load_backbone(family_model(name), native_video=True)
    imgs = _images(4, seed=8)
    examples = [
        TrainingExample(
            frames=imgs[:3],
            question="How would you rate the quality of this video?",
            answer="The quality of the video is good.",
            kind="video",
        ),
        TrainingExample(
            frames=[imgs[3]],
            question="How would you rate the quality of this image?\n<|image|>",
            answer="The quality of the image is bad.",
        ),
    ]
    batch = native.training_batch(examples)
    supervised = [native.tokenizer.decode(row[row != -100]) for row in batch["labels"]]
    assert supervised == [ex.answer + "<|im_end|>" for ex in examples]
    with torch.no_grad():
        logits = native.model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    level, found = native.answer_level_logits(batch, logits)
    assert found.all()
    scoring = torch.cat([_logits(native, [imgs[:3]], "video"), _logits(native, [[imgs[3]]])])
    torch.testing.assert_close(level, scoring, atol=1e-5, rtol=0)


def test_native_video_elsewhere_is_refused_in_one_line(family_model: Callable[[str], Path]) -> None:
    with pytest.raises(InputError, match=r"^idefics3 models read videos as frames here .* leave native video off$"):
        load_backbone(family_model("idefics3"), native_video=True)
