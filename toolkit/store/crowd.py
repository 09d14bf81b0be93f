"""Crowd workers from Prolific and MTurk: joining from the platform's URL and finishing with its code.

Prolific opens the study with ``PROLIFIC_PID``, ``STUDY_ID`` and ``SESSION_ID`` in the query string
and expects a completion code (or a redirect to its completion URL); MTurk's external HITs pass
``workerId``, ``assignmentId``, ``hitId`` and ``turkSubmitTo`` (``assignmentId=ASSIGNMENT_ID_NOT_AVAILABLE``
is a preview: show, record nothing) and take the work back by a form POST carrying ``assignmentId``.

A worker needs no invite where the study allows the platform. The rater is found or created by
(study, platform, worker id) under a unique index, so two tabs or two app servers opening the link
at once make one rater; the token the app keeps is derived from the worker id with a secret key
stored in the database, so every join of the same worker gets the same token (only its hash is
stored, as for invited raters).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import quote

from sqlalchemy import select
from sqlalchemy.orm import Session

from toolkit.errors import InputError, StoreError
from toolkit.store.raters import insert_or_skip
from toolkit.store.schema import AppSetting, Rater, Study
from toolkit.store.studies import hash_token
from toolkit.store.study_settings import study_protocol

CROWD_KEY_SETTING = "crowd_token_key"
MTURK_PREVIEW = "ASSIGNMENT_ID_NOT_AVAILABLE"
PROLIFIC_COMPLETE_URL = "https://app.prolific.com/submissions/complete?cc={code}"
MTURK_SUBMIT_HOSTS = ("https://www.mturk.com", "https://workersandbox.mturk.com")
"""Where a link's ``turkSubmitTo`` may send the finished work (production or the sandbox); any other
value is ignored, so a forged link cannot carry a worker's completion code elsewhere."""
# Platform ids are short opaque strings; anything else in a URL is refused rather than stored.
_ID = re.compile(r"^[A-Za-z0-9_\-.:]{1,200}$")


@dataclass
class CrowdJoin:
    platform: str
    external_id: str
    preview: bool  # MTurk preview: show the task, record nothing
    rater: Rater | None = None
    token: str | None = None  # the rater's token for the app (the same on every join)
    resumed: bool = False  # the worker had joined before


@dataclass
class Completion:
    platform: str | None
    code: str | None
    redirect_url: str | None = None  # Prolific: send the browser here
    form_action: str | None = None  # MTurk: POST the form_fields here
    form_fields: dict[str, str] = field(default_factory=dict)


def detect_platform(params: Mapping[str, str]) -> str | None:
    """``prolific`` or ``mturk`` from the query parameters a platform adds; None for neither."""
    if params.get("PROLIFIC_PID"):
        return "prolific"
    if params.get("workerId") or params.get("assignmentId"):
        return "mturk"
    return None


def _param(params: Mapping[str, str], name: str, required: bool = True) -> str | None:
    value = str(params.get(name) or "").strip()
    if not value:
        if required:
            raise InputError(f"the link is missing its {name} parameter")
        return None
    if not _ID.match(value):
        raise InputError(f"the link's {name} parameter is not a platform id: {value[:40]!r}")
    return value


def _crowd_key(session: Session) -> bytes:
    row = session.get(AppSetting, CROWD_KEY_SETTING)
    if row is None:
        # Two servers making the key at once: the first stored key wins, both use it.
        insert_or_skip(session, AppSetting, dict(key=CROWD_KEY_SETTING, value=secrets.token_hex(32)))
        row = session.get(AppSetting, CROWD_KEY_SETTING, populate_existing=True)
        assert row is not None
    return row.value.encode("ascii")


def crowd_token(session: Session, study: Study, platform: str, external_id: str) -> str:
    """The app token of a crowd worker in a study (derived, so every join gives the same one)."""
    message = f"{study.id}\x1f{platform}\x1f{external_id}".encode()
    return "c-" + hmac.new(_crowd_key(session), message, hashlib.sha256).hexdigest()[:40]


def crowd_join(session: Session, study: Study, params: Mapping[str, str], now: datetime | None = None) -> CrowdJoin:
    """Create or resume the rater of a crowd worker from the platform's URL parameters."""
    platform = detect_platform(params)
    if platform is None:
        raise InputError("the link carries no Prolific (PROLIFIC_PID) or MTurk (workerId) parameters")
    if platform not in study_protocol(study).crowd_platforms:
        raise StoreError(f"study {study.name!r} does not take workers from {platform}")
    if platform == "prolific":
        external_id = _param(params, "PROLIFIC_PID")
        external_study, external_session = _param(params, "STUDY_ID", False), _param(params, "SESSION_ID", False)
    else:
        if str(params.get("assignmentId") or "") == MTURK_PREVIEW:
            return CrowdJoin(platform=platform, external_id=str(params.get("workerId") or ""), preview=True)
        external_id = _param(params, "workerId")
        external_study, external_session = _param(params, "hitId", False), _param(params, "assignmentId")
    assert external_id is not None  # required above
    token = crowd_token(session, study, platform, external_id)
    found = _find(session, study, platform, external_id)
    resumed = found is not None
    if found is None:
        found = _create(session, study, platform, external_id, token)
        resumed = found.token_hash != hash_token(token)  # another server created it just now
    if found.revoked:
        raise StoreError("unknown or revoked rater token")
    # The latest session or assignment of the platform is the one to report back to.
    found.external_study = external_study or found.external_study
    found.external_session = external_session or found.external_session
    session.flush()
    return CrowdJoin(
        platform=platform, external_id=external_id, preview=False, rater=found, token=token, resumed=resumed
    )


def _find(session: Session, study: Study, platform: str, external_id: str) -> Rater | None:
    return session.scalar(
        select(Rater).where(Rater.study_id == study.id, Rater.platform == platform, Rater.external_id == external_id)
    )


def _create(session: Session, study: Study, platform: str, external_id: str, token: str) -> Rater:
    values = dict(
        study_id=study.id,
        name=f"{platform}:{external_id}",
        token_hash=hash_token(token),
        self_registered=True,
        platform=platform,
        external_id=external_id,
    )
    insert_or_skip(session, Rater, values)  # a concurrent join of the same worker: use the row it made
    found = _find(session, study, platform, external_id)
    if found is None:  # the name is taken by an invited rater
        raise StoreError(f"study {study.name!r} already has a rater named {values['name']!r}")
    return found


def mturk_submit_url(params: Mapping[str, str] | None, fallback: str) -> str:
    """MTurk's submit form for the HIT the link came from: ``turkSubmitTo`` + ``/mturk/externalSubmit``
    (the sandbox or production, as the HIT), else ``fallback`` (the study's ``mturk_submit_url``)."""
    submit_to = str((params or {}).get("turkSubmitTo") or "").strip().rstrip("/")
    if submit_to in MTURK_SUBMIT_HOSTS:
        return f"{submit_to}/mturk/externalSubmit"
    return fallback


def completion(
    session: Session, rater: Rater, now: datetime | None = None, params: Mapping[str, str] | None = None
) -> Completion:
    """What to show (or where to send) a rater who finished: the study's completion code, Prolific's
    completion URL, or MTurk's submit form. Refused before the rater reached the end.

    ``params``: the page's query parameters; an MTurk link's ``turkSubmitTo`` picks the form's address.
    """
    from toolkit.store.protocol import rater_flow

    if rater_flow(session, rater, now).step != "completion":
        raise StoreError(f"rater {rater.name!r} has not finished the study yet")
    study = session.get(Study, rater.study_id)
    assert study is not None
    protocol = study_protocol(study)
    code = protocol.completion_code
    if rater.platform == "prolific":
        url = PROLIFIC_COMPLETE_URL.format(code=quote(code, safe="")) if code else None
        return Completion(platform="prolific", code=code, redirect_url=url)
    if rater.platform == "mturk":
        fields = {"assignmentId": rater.external_session or ""}
        if code:
            fields["completionCode"] = code
        return Completion(
            platform="mturk",
            code=code,
            form_action=mturk_submit_url(params, protocol.mturk_submit_url),
            form_fields=fields,
        )
    return Completion(platform=None, code=code)
