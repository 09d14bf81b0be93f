"""One entry point over the subject models, by name."""

from __future__ import annotations

from toolkit.analysis.mle import Solver, fit_mle
from toolkit.analysis.mos import CiMethod, fit_mos
from toolkit.analysis.names import SUBJECT_MODELS, ModelName
from toolkit.analysis.rejection import fit_bt500, fit_p913
from toolkit.analysis.result import SubjectModelResult
from toolkit.analysis.votes import Votes
from toolkit.errors import InputError


def fit_subject_model(
    votes: Votes,
    model: ModelName = "mle_co",
    ci: CiMethod = "t",
    solver: Solver = "auto",
    min_rater_votes: int = 2,
) -> SubjectModelResult:
    """Fit ``model`` to ``votes``. ``ci`` applies to the mean-based models (mos, bt500, p913);
    the MLE's intervals come from its likelihood."""
    if model == "mos":
        return fit_mos(votes, ci)
    if model == "bt500":
        return fit_bt500(votes, ci)
    if model == "p913":
        return fit_p913(votes, ci)
    if model in ("mle", "mle_co"):
        return fit_mle(votes, content_ambiguity=model == "mle", solver=solver, min_rater_votes=min_rater_votes)
    raise InputError(f"unknown subject model {model!r}; choose one of {', '.join(SUBJECT_MODELS)}")
