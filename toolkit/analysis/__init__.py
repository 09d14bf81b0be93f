"""Cleaning ratings: MOS and CIs, subject models, rater screening, split-half agreement.

Typical use::

    from toolkit.analysis import prepare_votes, fit_subject_model
    votes = prepare_votes(frame, content_col="content")     # long table: item, rater, vote
    result = fit_subject_model(votes, "mle_co")
    result.items_table()    # item, score, ci_low, ci_high, n
    result.raters_table()   # rater, bias, inconsistency, rejected, reason

or, with screening and the noise ceiling, ``analyze_votes(frame, AnalysisOptions(model="p913"))``.
The subject models reproduce Netflix sureal 0.9.0 (``MOS``, ``MLE``, ``MLE_CO``, ``BT500``,
``P913``); on partially sampled studies BT.500 counts a rater's outliers against the votes the
rater cast rather than the study's item count (see :mod:`toolkit.analysis.rejection`). MLE fits
that collapse onto a zero-variance singularity are refused with the reason, where sureal
returns them (see :mod:`toolkit.analysis.mle`).
"""

from toolkit.analysis.agreement import SplitHalfResult, spearman_brown, split_half_agreement
from toolkit.analysis.mle import fit_mle
from toolkit.analysis.models import MODELS, SUBJECT_MODELS, ModelName, fit_subject_model
from toolkit.analysis.mos import fit_mos, item_statistics
from toolkit.analysis.normalize import ScaleMapping, fit_scale_mapping, rescale_range, zscore_votes
from toolkit.analysis.pipeline import (
    Analysis,
    AnalysisOptions,
    analyze_snapshot,
    analyze_study,
    analyze_votes,
    clean_labels,
    load_study_votes,
    read_votes,
)
from toolkit.analysis.labels import StudyLabels, item_aggregates, study_label_table
from toolkit.analysis.rejection import Bt500Screening, bt500_screen, fit_bt500, fit_p913, p913_bias
from toolkit.analysis.result import ITEM_COLUMNS, MOS_TABLE_COLUMNS, RATER_COLUMNS, SubjectModelResult
from toolkit.analysis.screening import ScreeningConfig, ScreeningReport, screen_raters
from toolkit.analysis.votes import Votes, prepare_votes

__all__ = [
    "SplitHalfResult", "spearman_brown", "split_half_agreement",
    "fit_mle",
    "MODELS", "SUBJECT_MODELS", "ModelName", "fit_subject_model",
    "fit_mos", "item_statistics",
    "ScaleMapping", "fit_scale_mapping", "rescale_range", "zscore_votes",
    "Analysis", "AnalysisOptions", "analyze_snapshot", "analyze_study", "analyze_votes", "clean_labels", "load_study_votes", "read_votes",
    "StudyLabels", "item_aggregates", "study_label_table",
    "Bt500Screening", "bt500_screen", "fit_bt500", "fit_p913", "p913_bias",
    "ITEM_COLUMNS", "MOS_TABLE_COLUMNS", "RATER_COLUMNS", "SubjectModelResult",
    "ScreeningConfig", "ScreeningReport", "screen_raters",
    "Votes", "prepare_votes",
]
