"""Writing a run's output folder: never over a folder that is not a previous run, and never
half-written.

Layout of ``out/``: the final adapter (LoRA) or model (full) with ``qalign_train.json`` at the top;
``checkpoints/step-N/`` with the state a resumed run continues from; ``best/`` a copy of the model
at the held-out evaluation that scored best. The top-level files are replaced in one sweep at
the end of a run, ``qalign_train.json`` last, so a folder with that file holds a finished run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from toolkit.errors import InputError
from toolkit.files import (
    claim_output_dir,
    give_default_modes,
    is_toolkit_output,
    new_sibling_dir,
    read_output_marker,
    write_output_marker,
)
from toolkit.training.config import DEFAULT_LR

RECORD_NAME = "qalign_train.json"
"""The run record (settings and metrics) written beside the adapter or model."""

CARD_NAME = "README.md"
"""The model card: what was trained on what, how well it did, and how to use it."""

CHECKPOINTS_DIR = "checkpoints"
BEST_DIR = "best"
RUN_SUBDIRS = (CHECKPOINTS_DIR, BEST_DIR)


TRAIN_MARK = "qalign train"
"""``written_by`` of the output marker of a training run's folder."""


def is_training_output(folder: Path) -> bool:
    """A folder a training run wrote: its marker, or (runs from before the marker) the run record,
    checkpoints or a best model; a killed run may have left only the latter two."""
    marker = read_output_marker(folder)
    if marker is not None:
        return marker.get("written_by") == TRAIN_MARK
    return is_toolkit_output(folder, legacy=(RECORD_NAME, *RUN_SUBDIRS))


def check_output_dir(out: str | os.PathLike[str]) -> Path:
    """Fail early, before any training, if ``out`` cannot be (re)written; else claim it.

    ``out`` must be new, empty or an earlier training run (which a run resumes or replaces); any
    other toolkit output, or a folder the toolkit did not write, is refused. The folder is created
    with the output marker at once, so that a run killed before its first checkpoint still leaves
    a folder the next run recognises.
    """
    target = Path(out)
    if target.is_dir() and any(target.iterdir()) and not is_training_output(target):
        raise InputError(
            f"output folder {target} is not empty and holds no previous training run; choose another --out"
        )
    claim_output_dir(target, overwrite=True, legacy=(RECORD_NAME, *RUN_SUBDIRS))
    target.mkdir(parents=True, exist_ok=True)
    if read_output_marker(target) is None:
        write_output_marker(target, TRAIN_MARK)
    return target


def staging_dir(target: Path) -> Path:
    """A fresh temporary sibling of ``target`` (same file system, so renames are atomic), with the
    mode ``mkdir`` gives under the umask: it becomes the output folder itself when swapped in."""
    return new_sibling_dir(target)


def publish_dir(staged: Path, target: Path, keep: tuple[str, ...] = RUN_SUBDIRS) -> None:
    """Make ``target`` hold the entries of ``staged`` plus its own ``keep`` entries.

    The old record goes first (the folder stops claiming a finished run), stale entries are
    removed, each new entry is renamed into place, and the new record comes last.
    """
    give_default_modes(staged)
    target.mkdir(parents=True, exist_ok=True)
    (target / RECORD_NAME).unlink(missing_ok=True)
    new = {e.name for e in staged.iterdir()}
    for entry in target.iterdir():
        if entry.name not in keep and entry.name not in new:
            _remove(entry)
    for entry in sorted(staged.iterdir(), key=lambda e: e.name == RECORD_NAME):
        dest = target / entry.name
        if dest.is_dir() and not dest.is_symlink():
            shutil.rmtree(dest)
        os.replace(entry, dest)
    shutil.rmtree(staged, ignore_errors=True)


def replace_dir(staged: Path, target: Path) -> None:
    """Swap ``staged`` in for ``target`` as a whole (the old folder is removed afterwards).

    ``target`` must be new, empty or a toolkit output (a ``best/`` model, an earlier merge)."""
    claim_output_dir(target, overwrite=True, legacy=(RECORD_NAME,))
    give_default_modes(staged)
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.{os.getpid()}.old")
        os.replace(target, old)
    os.replace(staged, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


# Files that describe how text and images are turned into inputs (and remote code named by
# ``auto_map``); weights, configs and anything else in the folder are not copied.
_AUXILIARY_FILES = re.compile(
    r"^(tokenizer.*|special_tokens_map\.json|added_tokens\.json|vocab\..*|merges\.txt|.*\.tiktoken|.*\.model"
    r"|preprocessor_config\.json|processor_config\.json|chat_template.*|[\w-]+\.py)$"
)


def copy_auxiliary_files(base: Path, folder: Path) -> list[str]:
    """Copy the base model folder's tokenizer, preprocessor and chat-template files that
    ``folder`` does not already have; returns their names."""
    copied = []
    for f in sorted(base.iterdir()):
        if f.is_file() and _AUXILIARY_FILES.match(f.name) and not (folder / f.name).exists():
            shutil.copy2(f, folder / f.name)
            copied.append(f.name)
    return copied


def write_record(folder: Path, record: dict[str, Any], data_sizes: Sequence[int] | None = None) -> None:
    """Write the run record and the model card made from it (``README.md``).

    Call it after the model is saved: PEFT's ``save_pretrained`` writes a README of its own, an
    empty template, which the card replaces. ``data_sizes``: the number of items of each training
    data set, in the order of ``config.data`` (the record only knows how many were drawn).
    """
    (folder / CARD_NAME).write_text(model_card(record, data_sizes), encoding="utf-8")
    (folder / RECORD_NAME).write_text(json.dumps(record, indent=1, default=str) + "\n", encoding="utf-8")


def read_record(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The run record of a training output folder."""
    path = Path(folder) / RECORD_NAME
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read training record {path}: {exc}") from None


# --------------------------------------------------------------------------- model card

_LOSS_TEXT = {
    "ce": "cross-entropy on the answer's level word (Q-Align)",
    "soft": "KL divergence to the items' vote distributions over the five levels (soft labels, DeQA-style)",
    "score": "cross-entropy on numeric answers (the model writes the score as a number)",
}
_CARD_ROWS = 20  # held-out evaluations listed in the card at most (the record has them all)


def model_card(record: dict[str, Any], data_sizes: Sequence[int] | None = None) -> str:
    """The ``README.md`` of a training output (the final adapter or model, or its ``best/`` copy),
    in Markdown with the YAML header the Hugging Face hub reads."""
    config = record.get("config") or {}
    result = record.get("result") or {}
    mode = config.get("mode", result.get("mode", "lora"))
    base = str(record.get("base_model", config.get("model", "")))
    folder = _card_folder(config, result)
    lines = _card_header(base, mode)
    what = "A LoRA adapter for" if mode == "lora" else "A full fine-tune of"
    lines += [
        f"# {Path(folder).name or folder}",
        "",
        f"{what} `{base}`, trained with `qalign train` to rate images and videos on the five Q-Align "
        "levels (bad, poor, fair, good, excellent) and score them from 1 to 5.",
    ]
    if "output_dir" not in result and "best" in result:
        best = result["best"]
        lines += [
            "",
            f"This is the run's copy of the model at step {best.get('step')}, the best held-out "
            f"{_metric_name(best.get('metric'))} of the run ({_fmt(best.get('value'))}).",
        ]
    lines += ["", "## Base model", "", f"- `{base}`"]
    if record.get("base_model_path") and record["base_model_path"] != base:
        lines.append(f"- loaded from `{record['base_model_path']}`")
    if record.get("transformers"):
        lines.append(f"- transformers {record['transformers']}")
    lines += _card_data(config, result, data_sizes)
    lines += _card_recipe(config, result, mode)
    lines += _card_metrics(config, result)
    # Frames need saying only where the model would read videos natively (--video-as-frames given).
    video = (
        record.get("video_input") if config.get("video_as_frames") or record.get("video_input") == "native" else None
    )
    lines += _card_usage(base, folder, mode, config.get("loss"), video)
    lines += ["", f"The complete settings and results are in `{RECORD_NAME}`."]
    return "\n".join(lines) + "\n"


def _card_folder(config: dict[str, Any], result: dict[str, Any]) -> str:
    if result.get("output_dir"):
        return str(result["output_dir"])
    out = str(config.get("out") or ".")
    return str(Path(out) / BEST_DIR) if "best" in result else out


def _card_header(base: str, mode: str) -> list[str]:
    lines = ["---"]
    # The hub links ``base_model`` to that repository; a local folder or the built-in tiny model
    # has no repository to link to.
    if re.fullmatch(r"[\w.-]+/[\w.-]+", base) and not Path(base).expanduser().exists():
        lines.append(f"base_model: {base}")
    lines += [
        f"library_name: {'peft' if mode == 'lora' else 'transformers'}",
        "tags:",
        "- image-quality-assessment",
        "- q-align",
        "- qalign-toolkit",
        "---",
        "",
    ]
    return lines


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _card_data(config: dict[str, Any], result: dict[str, Any], data_sizes: Sequence[int] | None) -> list[str]:
    sources = [str(s) for s in _as_list(config.get("data"))]
    lines = ["", "## Training data", ""]
    if not sources:
        return lines + ["Not recorded."]
    images = _as_list(config.get("images"))
    media = images if len(images) == len(sources) else [images[0] if images else None] * len(sources)
    columns: list[tuple[str, list[Any]]] = [("data set", [f"`{s}`" for s in sources])]
    if data_sizes is not None and len(data_sizes) == len(sources):
        columns.append(("items", [f"{int(n):,}" for n in data_sizes]))
    draws = _as_list(result.get("draws"))
    if len(draws) == len(sources):
        columns.append(("examples drawn", [f"{int(n):,}" for n in draws]))
    weights = _as_list(config.get("weights"))
    if len(sources) > 1:
        columns.append(
            (
                "sampling weight",
                [_fmt(w) for w in weights]
                if len(weights) == len(sources)
                else ["in proportion to size"] * len(sources),
            )
        )
    columns.append(("media folder", [f"`{m}`" if m else "beside the data" for m in media]))
    lines += ["| " + " | ".join(name for name, _ in columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(str(values[i]) for _, values in columns) + " |" for i in range(len(sources))]
    notes = []
    if data_sizes is not None and len(data_sizes) == len(sources) and len(sources) > 1:
        notes.append(f"{sum(int(n) for n in data_sizes):,} items in all.")
    if len(draws) == len(sources):
        notes.append("Examples drawn: how many the run trained on, repeats over epochs included.")
    if config.get("split") and any(Path(s).is_dir() for s in sources):
        notes.append(f"Saved datasets: split `{config['split']}`.")
    if notes:
        lines += ["", " ".join(notes)]
    if config.get("eval_data"):
        n = _heldout_n(result)
        lines += ["", f"Held-out set, not trained on: `{config['eval_data']}`" + (f" ({n:,} items)." if n else ".")]
    return lines


def _heldout_n(result: dict[str, Any]) -> int | None:
    evals = _evaluations(result)
    return evals[-1].get("n") if evals else None


def _card_recipe(config: dict[str, Any], result: dict[str, Any], mode: str) -> list[str]:
    loss = config.get("loss", "ce")
    lr = config.get("lr")
    if lr is None:
        lr = DEFAULT_LR.get(mode)
    rows = [
        ("recipe", f"`{config['recipe']}`" if config.get("recipe") else "none (settings given one by one)"),
        ("mode", "LoRA (the base model stays frozen)" if mode == "lora" else "full (every weight trains)"),
        ("loss", f"`{loss}`: {_LOSS_TEXT.get(loss, loss)}"),
        ("optimizer steps", result.get("steps", config.get("max_steps") or f"{config.get('epochs')} epochs")),
        ("learning rate (peak)", f"{lr:g}" if isinstance(lr, (int, float)) else "n/a"),
        ("schedule", f"linear warm-up over {_fmt(config.get('warmup_ratio'))} of the steps, then cosine decay"),
        ("batch", f"{config.get('batch_size')} per device x {config.get('grad_accum', 1)} accumulated"),
        ("weight decay, gradient clip", f"{_fmt(config.get('weight_decay'))}, {_fmt(config.get('max_grad_norm'))}"),
        (
            "precision",
            f"{config.get('dtype')}" + (", gradient checkpointing" if config.get("gradient_checkpointing") else ""),
        ),
        ("seed", config.get("seed")),
    ]
    if mode == "lora":
        rows.append(
            (
                "LoRA",
                f"r {config.get('lora_r')}, alpha {config.get('lora_alpha')}, dropout "
                f"{_fmt(config.get('lora_dropout'))}, on `{config.get('lora_target_modules')}`",
            )
        )
        if config.get("trainable_modules"):
            rows.append(("also trained in full", ", ".join(f"`{m}`" for m in config["trainable_modules"])))
    elif config.get("frozen_modules"):
        rows.append(("kept frozen", ", ".join(f"`{m}`" for m in config["frozen_modules"])))
    if result.get("trainable_parameters"):
        rows.append(
            ("trainable parameters", f"{result['trainable_parameters']:,} of {result.get('total_parameters', 0):,}")
        )
    if result.get("samples"):
        rows.append(
            (
                "examples seen",
                f"{result['samples']:,}" + (f" in {result['seconds']:.0f} s" if result.get("seconds") else ""),
            )
        )
    if result.get("final_loss") is not None:
        rows.append(("final training loss", _fmt(result["final_loss"])))
    lines = ["", "## Training recipe", "", "| setting | value |", "| --- | --- |"]
    return lines + [f"| {name} | {value} |" for name, value in rows]


def _evaluations(result: dict[str, Any]) -> list[dict[str, Any]]:
    heldout = result.get("heldout")
    if isinstance(heldout, dict):  # the record of a ``best/`` copy holds its one evaluation
        return [heldout]
    return [h for h in heldout or [] if isinstance(h, dict)]


def _metric_name(metric: Any) -> str:
    return str(metric).upper() if metric in ("srcc", "plcc") else str(metric)


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _card_metrics(config: dict[str, Any], result: dict[str, Any]) -> list[str]:
    lines = ["", "## Held-out results", ""]
    evals = _evaluations(result)
    if not evals:
        return lines + [
            "The run had no held-out set (`--eval-data`); measure the model with `qalign eval` before relying on it."
        ]
    last = evals[-1]
    lines.append(
        f"At step {last.get('step')}: SRCC {_fmt(last.get('srcc'))}, PLCC {_fmt(last.get('plcc'))}, "
        f"answer loss {_fmt(last.get('loss'))} on {last.get('n')} held-out items"
        + (
            " (before training: SRCC " + _fmt(evals[0].get("srcc")) + ", PLCC " + _fmt(evals[0].get("plcc")) + ")"
            if len(evals) > 1 and evals[0].get("step") == 0
            else ""
        )
        + "."
    )
    best = result.get("best")
    if isinstance(best, dict) and "output_dir" in result:
        lines += [
            "",
            f"Best: step {best.get('step')}, {_metric_name(best.get('metric'))} {_fmt(best.get('value'))} "
            f"(a copy of that model is in `{BEST_DIR}/`).",
        ]
    if len(evals) > 1:
        keep = (
            evals
            if len(evals) <= _CARD_ROWS
            else [evals[round(i * (len(evals) - 1) / (_CARD_ROWS - 1))] for i in range(_CARD_ROWS)]
        )
        lines += ["", "| step | SRCC | PLCC | loss | KL | items |", "| ---: | ---: | ---: | ---: | ---: | ---: |"]
        lines += [
            f"| {e.get('step')} | {_fmt(e.get('srcc'))} | {_fmt(e.get('plcc'))} | {_fmt(e.get('loss'))} | "
            f"{_fmt(e.get('kl'))} | {e.get('n')} |"
            for e in keep
        ]
    lines += [
        "",
        "SRCC and PLCC: Spearman and Pearson correlation of the predicted score with the ground truth "
        "(PLCC without a logistic fit); `qalign eval` gives them with confidence intervals.",
    ]
    return lines


def _card_usage(base: str, folder: str, mode: str, loss: str | None, video_input: str | None = None) -> list[str]:
    lines = ["", "## Use", "", "```bash"]
    if mode == "lora":
        lines += [
            f"qalign score IMAGES... --model {base} --adapter {folder} --out scores.csv",
            "# or fold the adapter into the weights first; the result scores without PEFT:",
            f"qalign merge --adapter {folder} --out merged",
            "qalign score IMAGES... --model merged --out scores.csv",
        ]
    else:
        lines.append(f"qalign score IMAGES... --model {folder} --out scores.csv")
    lines.append("```")
    lines += [
        "",
        "Add `--video` for videos and `--task aesthetics` for aesthetics; each row of the CSV holds the "
        "1-5 score and the five level probabilities.",
    ]
    if video_input == "native":
        lines += ["", "It was trained on videos given as videos (native video input), which `--video` does by default."]
    elif video_input == "frames":
        lines += [
            "",
            "It was trained on videos given as their frames: score videos with `--video --video-as-frames` "
            "(the default for models that read videos natively is to give them as videos).",
        ]
    if loss == "score":
        lines += [
            "",
            "This model was trained to write the score as a number, not to choose a level word, so its "
            "level probabilities are not its prediction: read its numbers with "
            '`toolkit.training.predict.predict_scores(..., method="generate")`.',
        ]
    return lines
