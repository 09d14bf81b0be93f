"""The settings of one fine-tuning run, readable from JSON or YAML and recorded with the output.

Every setting starts out unset (``None``). When the config is built, an unset setting takes the
value of the named recipe if the recipe has one, else its plain default (a few differ for the
untrained tiny model: full mode, one CPU thread; see ``model_defaults``); a setting given in any
way (constructor, file, command line) is kept, even one equal to the plain default. The
resolved values are what ``to_dict`` returns and what a run records.

Each field carries its plain default and its help text in its metadata; ``qalign train`` and
``qalign ablate`` build their options from them (``min``/``max``: the accepted range on the
command line; ``path``: the value is a file or folder).
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from toolkit.errors import InputError
from toolkit.training.recipes import RECIPES, recipe_values

Mode = Literal["lora", "full"]
LossName = Literal["ce", "soft", "score"]
BestMetric = Literal["srcc", "plcc", "loss"]

LOSS_NAMES: tuple[str, ...] = ("ce", "soft", "score")
BEST_METRICS: tuple[str, ...] = ("srcc", "plcc", "loss")

DEFAULT_LORA_TARGETS = r".*language_model.*\.(q_proj|v_proj)"
"""Query and value projections of the language model only. A plain ``["q_proj", "v_proj"]``
would also match the attention layers of LLaVA-style vision towers."""

DEFAULT_LR = {"lora": 2e-4, "full": 2e-5}
"""The reference recipes' learning rates (Q-Align LoRA and full fine-tuning)."""


UNTRAINED_TINY_DEFAULTS: dict[str, Any] = {
    # LoRA adapters on random weights learn next to nothing: the tiny model trains in full.
    "mode": "full",
    # A model of a few hundred thousand parameters gains nothing from more threads and loses
    # much when other processes share the cores: on a 2-core machine 20 steps took 0.50 s on
    # 1 thread and 0.46 s on 2 (torch's default) when idle, but 0.5-4 s against 7-48 s with
    # other jobs running.
    "cpu_threads": 1,
}
"""Plain defaults that differ for the randomly initialised tiny model (below a recipe's values
and anything given, like every plain default)."""


def model_defaults(model: str | None) -> dict[str, Any]:
    """The plain defaults particular to ``model``: :data:`UNTRAINED_TINY_DEFAULTS` for the
    built-in ``tiny`` model or a folder holding it untrained, else none."""
    if model is None:
        return {}
    if model == "tiny":
        return UNTRAINED_TINY_DEFAULTS
    from toolkit.models.tiny import is_untrained_tiny_model

    return UNTRAINED_TINY_DEFAULTS if is_untrained_tiny_model(model) else {}


def setting(default: Any = None, help: str = "", **cli: Any) -> Any:
    """A field that is ``None`` until resolved: then the recipe's value or ``default``.

    ``None`` is the only marker of "not given" that survives files and command lines, which is
    why the plain default lives in the metadata and not in the field itself.
    """
    return field(default=None, metadata={"default": default, "help": help, **cli})


def _names(values: Any) -> str:
    values = list(values)
    return ", ".join(values[:-1]) + " or " + values[-1] if len(values) > 1 else "".join(values)


@dataclass
class TrainConfig:
    """Everything that defines a run; ``train(config)`` needs nothing else.

    ``recipe`` names a preset of :mod:`toolkit.training.recipes`; it fills the settings that are
    not given. ``TrainConfig.from_recipe(name, lora_r=8)`` and ``TrainConfig(recipe=name, lora_r=8)``
    are the same run: r 8, everything else from the recipe.
    """

    model: str = setting(
        "tiny", "Base model: 'tiny' (the default), a checkpoint folder, a OneAlign folder or a hub id."
    )
    data: str | list[str] = setting(
        "",
        "Conversation JSON or save_to_disk dataset folder; repeat for multi-task training (each keeps its prompts).",
        path=True,
    )
    weights: list[float] | None = setting(
        None, "Sampling weight per --data, e.g. 2,1 (default: in proportion to their sizes)."
    )
    images: str | list[str] | None = setting(
        None,
        "Folder that relative media paths are resolved against (default: the JSON's folder); once, or once per --data.",
        path=True,
    )
    out: str = setting(
        "qalign-finetuned",
        "Output folder: the LoRA adapter (lora) or the whole model (full), plus checkpoints/ and best/.",
        path=True,
    )
    split: str = setting("train", "Split of a saved DatasetDict (default train).")
    recipe: str | None = setting(None, f"Preset: {_names(RECIPES)} (the reference settings).")
    mode: Mode = setting("lora", "lora (default; full for the untrained tiny model) or full.")
    loss: LossName = setting(
        "ce",
        "ce (level cross-entropy, Q-Align; default), soft (KL to the vote distribution, "
        "DeQA-style) or score (numeric answers, the paper's baseline).",
    )
    epochs: float = setting(3.0, "Passes over the data (default 3).", min=0)
    max_steps: int | None = setting(None, "Optimizer steps; overrides --epochs.", min=1)
    # None keeps the mode's reference rate (DEFAULT_LR), so switching the mode switches the rate.
    lr: float | None = setting(None, "Peak learning rate (default 2e-4 for lora, 2e-5 for full).", min=0)
    batch_size: int = setting(8, "Examples per micro-batch and device (default 8).", min=1)
    grad_accum: int = setting(1, "Micro-batches per optimizer step (default 1).", min=1)
    seed: int = setting(0, "Seed of adapter initialisation, sampling order and dropout (default 0).")
    lora_r: int = setting(8, "LoRA rank (default 8; 128 in onealign-lora).", min=1)
    lora_alpha: int = setting(16, "LoRA alpha (default 16; 256 in onealign-lora).", min=1)
    lora_dropout: float = setting(0.05, "LoRA dropout (default 0.05).", min=0, max=0.99)
    lora_target_modules: str | list[str] = setting(
        DEFAULT_LORA_TARGETS,
        "Modules that get LoRA adapters: a regex over module names, or repeat for a list of "
        "names (default: q_proj and v_proj of the language model).",
    )
    trainable_modules: list[str] = setting(
        [], "Module trained in full beside LoRA, e.g. a projector; repeat for several."
    )
    frozen_modules: list[str] = setting([], "Module kept frozen in full mode, e.g. a vision tower; repeat for several.")
    warmup_ratio: float = setting(
        0.03, "Share of the steps that warm the learning rate up before the cosine decay (default 0.03).", min=0
    )
    weight_decay: float = setting(0.0, "AdamW weight decay (default 0).", min=0)
    max_grad_norm: float = setting(1.0, "Gradient norm clip (default 1; 0: no clipping).", min=0)
    eval_data: str | None = setting(
        None, "Held-out conversations: loss, SRCC and PLCC logged before, during and after training.", path=True
    )
    eval_images: str | None = setting(None, "Media folder of --eval-data.", path=True)
    eval_every: int = setting(
        0, "Optimizer steps between held-out evaluations (0: before and after, and at each save).", min=0
    )
    eval_batch_size: int = setting(16, "Held-out items scored per batch (default 16).", min=1)
    save_every: int = setting(0, "Optimizer steps between checkpoints in OUT/checkpoints (0: none).", min=0)
    keep_checkpoints: int = setting(1, "Most recent checkpoints kept (default 1).", min=1)
    resume: bool = setting(False, "Continue from the last checkpoint in OUT (a fresh run when there is none).")
    best_metric: BestMetric = setting("srcc", "Held-out metric that picks OUT/best: srcc (default), plcc or loss.")
    # Mixed precision keeps the master weights in float32.
    dtype: str = setting(
        "float32", "float32 (default), bf16 or fp16 mixed precision, or auto (bf16 where the GPU has it)."
    )
    gradient_checkpointing: bool = setting(False, "Recompute activations in the backward pass (less memory, slower).")
    device: str = setting("auto", "auto (default), cpu, cuda or mps.")
    max_frames: int | None = setting(None, "Frames decoded per video file at most (default: no cap).", min=1)
    video_as_frames: bool = setting(
        False,
        "Give videos to the model as their frames, one image each, even where it reads videos natively "
        "(Qwen2-VL, Qwen2.5-VL, Qwen3-VL, Qwen3.5, SmolVLM2, InternVL, LLaVA-OneVision do by default; "
        "other models always read frames). "
        "Score the result the same way (qalign score --video-as-frames).",
    )
    log_every: int = setting(1, "Optimizer steps between progress reports (default 1).", min=1)
    num_workers: int = setting(0, "DataLoader processes preparing batches (default 0; 4-8 keep a GPU busy).", min=0)
    # Small models on a busy machine train several times faster with 1 thread than with many;
    # None keeps torch's default (1 is the tiny model's default, see UNTRAINED_TINY_DEFAULTS).
    cpu_threads: int | None = setting(
        None, "torch CPU threads (default: torch's; 1 for the tiny model, fastest for small models).", min=1
    )

    def __post_init__(self) -> None:
        preset = recipe_values(self.recipe) if self.recipe is not None else {}
        for f in fields(self):  # ``model`` comes first, so the model's own defaults below can depend on it
            if getattr(self, f.name) is None:
                if f.name in preset:
                    value = preset[f.name]
                else:
                    value = model_defaults(self.model).get(f.name, f.metadata["default"])
                setattr(self, f.name, copy.deepcopy(value))  # no run shares a list with another
        self.validate()

    @classmethod
    def from_recipe(cls, name: str, **overrides: Any) -> TrainConfig:
        """Recipe ``name`` with ``overrides`` (any not None) on top."""
        return cls.from_dict({**overrides, "recipe": name})

    @property
    def learning_rate(self) -> float:
        return float(self.lr) if self.lr is not None else DEFAULT_LR[self.mode]

    @property
    def data_paths(self) -> list[str]:
        """The training data sets, one or more."""
        return [self.data] if isinstance(self.data, str) else list(self.data)

    @property
    def image_roots(self) -> list[str | None]:
        """The media folder of each data set (``None``: relative to its JSON file)."""
        n = len(self.data_paths)
        if self.images is None or isinstance(self.images, str):
            return [self.images] * n
        return list(self.images) if len(self.images) == n else [self.images[0]] * n

    def validate(self) -> None:
        """Raise :class:`InputError` naming the first setting that cannot work."""
        if self.mode not in ("lora", "full"):
            raise InputError(f"mode must be 'lora' or 'full', got {self.mode!r}")
        if self.loss not in LOSS_NAMES:
            raise InputError(f"unknown loss {self.loss!r}; available: {', '.join(LOSS_NAMES)}")
        if self.best_metric not in BEST_METRICS:
            raise InputError(f"best_metric must be one of {', '.join(BEST_METRICS)}, got {self.best_metric!r}")
        positive = {
            "batch_size": self.batch_size,
            "grad_accum": self.grad_accum,
            "lora_r": self.lora_r,
            "eval_batch_size": self.eval_batch_size,
            "log_every": self.log_every,
            "keep_checkpoints": self.keep_checkpoints,
        }
        for name, value in positive.items():
            if not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be a positive integer, got {value!r}")
        if self.cpu_threads is not None and (not isinstance(self.cpu_threads, int) or self.cpu_threads < 1):
            raise InputError(f"cpu_threads must be a positive integer, got {self.cpu_threads!r}")
        if self.max_steps is not None and self.max_steps < 1:
            raise InputError(f"max_steps must be at least 1, got {self.max_steps}")
        if self.max_steps is None and not self.epochs > 0:
            raise InputError(f"epochs must be positive, got {self.epochs}")
        if self.lr is not None and not self.lr > 0:
            raise InputError(f"lr must be positive, got {self.lr}")
        if not 0 <= self.warmup_ratio < 1:
            raise InputError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if not 0 <= self.lora_dropout < 1:
            raise InputError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if not isinstance(self.num_workers, int) or self.num_workers < 0:
            raise InputError(f"num_workers must be 0 or more, got {self.num_workers!r}")
        for name in ("eval_every", "save_every"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise InputError(f"{name} must be 0 or more, got {getattr(self, name)!r}")
        self._validate_data()

    def _validate_data(self) -> None:
        if not isinstance(self.data, (str, list)) or (
            isinstance(self.data, list) and not all(isinstance(d, str) and d for d in self.data)
        ):
            raise InputError(f"data must be a path or a list of paths, got {self.data!r}")
        n = len(self.data_paths)
        if isinstance(self.data, list) and n == 0:
            raise InputError("data is an empty list; give at least one data set")
        if isinstance(self.images, list) and len(self.images) not in (1, n):
            raise InputError(
                f"images: give one folder for all data sets or one per data set ({n}), got {len(self.images)}"
            )
        if self.weights is not None:
            try:
                weights = [float(w) for w in self.weights]
            except (TypeError, ValueError):
                raise InputError(f"weights must be numbers, got {self.weights!r}") from None
            if len(weights) != n:
                raise InputError(f"weights: one per data set ({n}), got {len(weights)}: {self.weights!r}")
            if any(not w >= 0 for w in weights) or not sum(weights) > 0:
                raise InputError(f"weights must be non-negative with a positive sum, got {self.weights!r}")
            self.weights = weights

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InputError(f"unknown training setting(s): {', '.join(unknown)}")
        return cls(**values)

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> TrainConfig:
        """Read a ``.json`` or ``.yaml``/``.yml`` file; ``overrides`` (not None) win over it."""
        values = read_config_file(path)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(values)


def read_config_file(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read config file {p}: {exc}") from None
    try:
        if p.suffix.lower() in (".yaml", ".yml"):
            import yaml

            values = yaml.safe_load(text)
        else:
            values = json.loads(text)
    except Exception as exc:  # json.JSONDecodeError or yaml.YAMLError
        raise InputError(f"config file {p} is not valid {p.suffix.lstrip('.') or 'JSON'}: {exc}") from None
    if not isinstance(values, dict):
        raise InputError(f"config file {p} must hold a mapping of settings")
    return values
