"""Per-study protocol settings: presentation, screening, quiz, traps, exclusion rules and crowd work.

Stored as JSON in ``Study.protocol``; a key that is absent takes its default, and every default is
how studies behaved before these settings existed (no checks, no quiz, no traps, no automatic
exclusion, invited raters only), so an existing study is unchanged until its administrator opts in.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal, get_args

from sqlalchemy import select
from sqlalchemy.orm import Session

from toolkit.errors import InputError, StoreError
from toolkit.store.schema import Item, Study, TrapItem

OversizePolicy = Literal["scale", "refuse"]
ReplayPolicy = Literal["none", "once", "free"]
AudioPolicy = Literal["muted", "sound"]
Platform = Literal["prolific", "mturk"]

PLATFORMS: tuple[str, ...] = get_args(Platform)
MTURK_SUBMIT_URL = "https://www.mturk.com/mturk/externalSubmit"
MTURK_SANDBOX_SUBMIT_URL = "https://workersandbox.mturk.com/mturk/externalSubmit"


@dataclass(frozen=True)
class StudyProtocol:
    """Everything a study decides about how it is run; see the module docstring for the defaults."""

    # Presentation (P.910: one stimulus pixel to one display pixel).
    oversize: OversizePolicy = (
        "scale"  # scale: fit the screen and record the factor; refuse: the screen check demands room
    )
    min_viewport_width: int = 0  # CSS pixels; 0: not checked
    min_viewport_height: int = 0
    min_dpr: float = 0.0  # device pixels per CSS pixel; 0: not checked
    max_zoom_deviation: float | None = None  # |zoom - 1| allowed; None: zoom not checked
    stimulus_width: int = 0  # the largest stimulus in pixels (``measure_stimuli``); checked when oversize = refuse
    stimulus_height: int = 0
    # P.910 ACR: a clip is shown once; "once" offers one replay from the start, "none" none, "free" a replay
    # button that stays offered (never player controls or seeking).
    video_replay: ReplayPolicy = "once"
    audio: AudioPolicy = "muted"
    # Qualification quiz on gold items.
    quiz_items: int = 0  # 0: no quiz
    quiz_pass: int = 0  # answers within the item's tolerance needed to pass
    # Trapping questions (P.808): one after every N votes; 0: none.
    trap_every: int = 0
    # Automatic exclusion rules; None: the rule is off.
    max_failed_traps: int | None = None  # excluded when failed traps >= this
    min_gold_accuracy: float | None = None  # excluded when the share of gold answers within tolerance < this
    max_same_run: int | None = None  # straightlining: excluded when the longest run of one level >= this
    max_level_share: float | None = None  # straightlining: excluded when one level's share of votes >= this
    min_median_ms: float | None = None  # too fast: excluded when the median response time < this
    rule_min_votes: int = 10  # the vote-pattern rules (run, share, speed) wait for this many test votes
    # Crowd work.
    crowd_platforms: tuple[str, ...] = ()  # platforms whose workers may join without an invite
    completion_code: str | None = None
    mturk_submit_url: str = MTURK_SUBMIT_URL
    max_items_per_rater: int | None = None  # test votes per rater; None: no cap

    @property
    def needs_environment_check(self) -> bool:
        return bool(
            self.min_viewport_width
            or self.min_viewport_height
            or self.min_dpr
            or self.max_zoom_deviation is not None
            or (self.oversize == "refuse" and (self.stimulus_width or self.stimulus_height))
        )

    @property
    def has_exclusion_rules(self) -> bool:
        return any(
            v is not None
            for v in (
                self.max_failed_traps,
                self.min_gold_accuracy,
                self.max_same_run,
                self.max_level_share,
                self.min_median_ms,
            )
        )


_FIELDS = {f.name for f in fields(StudyProtocol)}
_CHOICES: dict[str, tuple[str, ...]] = {
    "oversize": get_args(OversizePolicy),
    "video_replay": get_args(ReplayPolicy),
    "audio": get_args(AudioPolicy),
}
_COUNTS: tuple[str, ...] = (
    "min_viewport_width",
    "min_viewport_height",
    "stimulus_width",
    "stimulus_height",
    "quiz_items",
    "quiz_pass",
    "trap_every",
    "rule_min_votes",
)
_OPTIONAL_COUNTS = ("max_failed_traps", "max_items_per_rater")
_SHARES = ("min_gold_accuracy", "max_level_share")


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"study setting {name}: expected a number, got {value!r}")
    return float(value)


def _count(name: str, value: Any, minimum: int = 0) -> int:
    number = _number(name, value)
    if number != int(number) or number < minimum:
        raise InputError(f"study setting {name}: expected a whole number >= {minimum}, got {value!r}")
    return int(number)


def check_protocol(protocol: StudyProtocol) -> StudyProtocol:
    """The protocol with its values checked (one line naming the first bad setting)."""
    changes: dict[str, Any] = {}
    for name, choices in _CHOICES.items():
        if getattr(protocol, name) not in choices:
            raise InputError(
                f"study setting {name}: choose one of {', '.join(choices)}, got {getattr(protocol, name)!r}"
            )
    for name in _COUNTS:
        changes[name] = _count(name, getattr(protocol, name))
    for name in _OPTIONAL_COUNTS:
        if getattr(protocol, name) is not None:
            changes[name] = _count(name, getattr(protocol, name), minimum=1)
    if protocol.max_same_run is not None:
        changes["max_same_run"] = _count("max_same_run", protocol.max_same_run, minimum=2)
    for name in _SHARES:
        value = getattr(protocol, name)
        if value is not None and not 0.0 < _number(name, value) <= 1.0:
            raise InputError(f"study setting {name}: expected a share in (0, 1], got {value!r}")
    if protocol.min_dpr and _number("min_dpr", protocol.min_dpr) < 0:
        raise InputError(f"study setting min_dpr: expected 0 or more, got {protocol.min_dpr!r}")
    for name in ("max_zoom_deviation", "min_median_ms"):
        value = getattr(protocol, name)
        if value is not None and _number(name, value) < 0:
            raise InputError(f"study setting {name}: expected 0 or more, got {value!r}")
    if protocol.quiz_pass > protocol.quiz_items:
        raise InputError(
            f"study setting quiz_pass: {protocol.quiz_pass} correct answers cannot be asked of a "
            f"{protocol.quiz_items}-item quiz"
        )
    platforms = tuple(dict.fromkeys(str(p).strip().lower() for p in protocol.crowd_platforms))
    unknown = [p for p in platforms if p not in PLATFORMS]
    if unknown:
        raise InputError(f"study setting crowd_platforms: unknown platform {unknown[0]!r} (use {', '.join(PLATFORMS)})")
    changes["crowd_platforms"] = platforms
    code = (protocol.completion_code or "").strip() or None
    if code is not None and (len(code) > 100 or not code.isprintable()):
        raise InputError(f"study setting completion_code: expected printable text up to 100 characters, got {code!r}")
    changes["completion_code"] = code
    if not str(protocol.mturk_submit_url).startswith("https://"):
        raise InputError(f"study setting mturk_submit_url: expected an https:// URL, got {protocol.mturk_submit_url!r}")
    return replace(protocol, **changes)


LEGACY_VIDEO_REPLAY: ReplayPolicy = "free"
"""The replay policy of studies whose stored settings predate the "once" default: those settings left out
``video_replay`` because it equalled the default of then, "free"."""


def study_protocol(study: Study) -> StudyProtocol:
    """The study's settings, defaults where none is stored."""
    if not study.protocol:
        return StudyProtocol()
    try:
        stored = json.loads(study.protocol)
    except ValueError:
        raise StoreError(f"study {study.name!r}: its stored settings are not JSON; set them again") from None
    known = {k: v for k, v in stored.items() if k in _FIELDS}  # keys of a later version are ignored
    # A study configured before the default became "once" keeps the replay its raters had.
    known.setdefault("video_replay", LEGACY_VIDEO_REPLAY)
    if "crowd_platforms" in known:
        known["crowd_platforms"] = tuple(known["crowd_platforms"])
    return StudyProtocol(**known)


def configure_protocol(session: Session, study: Study, **changes: Any) -> StudyProtocol:
    """Change some settings of a study (checked together); returns the settings now in force."""
    unknown = sorted(set(changes) - _FIELDS)
    if unknown:
        raise InputError(f"unknown study setting {unknown[0]!r} (known: {', '.join(sorted(_FIELDS))})")
    if isinstance(changes.get("crowd_platforms"), str):
        changes["crowd_platforms"] = tuple(p for p in changes["crowd_platforms"].split(",") if p.strip())
    protocol = check_protocol(replace(study_protocol(study), **changes))
    # Only what differs from the defaults is stored, so that a later change of a default reaches it;
    # the replay policy is always stored (its absence means a study configured before "once" was the default).
    defaults = asdict(StudyProtocol())
    stored = {k: v for k, v in asdict(protocol).items() if v != defaults[k] or k == "video_replay"}
    study.protocol = json.dumps(stored, sort_keys=True) if stored else None
    session.flush()
    return protocol


def set_study_texts(
    session: Session, study: Study, instructions: str | None = None, consent: str | None = None
) -> None:
    """Set the instructions and the consent text (Markdown); None leaves one as it is, '' clears it."""
    if instructions is not None:
        study.instructions = instructions.strip() or None
    if consent is not None:
        study.consent_text = consent.strip() or None
    session.flush()


def image_size(file: Path) -> tuple[int, int] | None:
    """Width and height of an image from its header (None for a file PIL cannot read)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(file) as image:
            return int(image.width), int(image.height)
    except (OSError, UnidentifiedImageError):
        return None


def measure_stimuli(session: Session, study: Study) -> tuple[int, int]:
    """The largest width and height among the study's rated images (test, gold, trap), stored in
    the settings so that ``oversize = "refuse"`` can demand a screen that shows them unscaled."""
    from toolkit.store.studies import resolve_in_root

    root = Path(study.media_root)
    paths = list(
        session.scalars(
            select(Item.path).where(Item.study_id == study.id, Item.kind == "image", Item.role.in_(("test", "gold")))
        )
    )
    paths += list(session.scalars(select(TrapItem.path).where(TrapItem.study_id == study.id, TrapItem.kind == "image")))
    width = height = 0
    for path in paths:
        try:
            size = image_size(resolve_in_root(root, path))
        except InputError:
            size = None
        if size is not None:
            width, height = max(width, size[0]), max(height, size[1])
    configure_protocol(session, study, stimulus_width=width, stimulus_height=height)
    return width, height
