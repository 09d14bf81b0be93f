"""Cleaning ratings: MOS and CIs, subject models, rater screening, split-half agreement,
Krippendorff's alpha and ICC(2,k), rater QA against a model's scores.

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

from __future__ import annotations

from typing import TYPE_CHECKING

from toolkit.lazy import lazy_exports

# Names load on first use: the command line reads the subject-model names from here, and must
# not pay for scipy and the solvers just to show its help.
_EXPORTS: dict[str, str] = {
    "SplitHalfResult": "toolkit.analysis.agreement",
    "spearman_brown": "toolkit.analysis.agreement",
    "split_half_agreement": "toolkit.analysis.agreement",
    "fit_mle": "toolkit.analysis.mle",
    "SUBJECT_MODELS": "toolkit.analysis.names",
    "ModelName": "toolkit.analysis.names",
    "fit_subject_model": "toolkit.analysis.subject_models",
    "fit_mos": "toolkit.analysis.mos",
    "item_statistics": "toolkit.analysis.mos",
    "ScaleMapping": "toolkit.analysis.normalize",
    "fit_scale_mapping": "toolkit.analysis.normalize",
    "rescale_range": "toolkit.analysis.normalize",
    "zscore_votes": "toolkit.analysis.normalize",
    "Analysis": "toolkit.analysis.pipeline",
    "AnalysisOptions": "toolkit.analysis.pipeline",
    "analyze_snapshot": "toolkit.analysis.pipeline",
    "analyze_study": "toolkit.analysis.pipeline",
    "analyze_votes": "toolkit.analysis.pipeline",
    "clean_labels": "toolkit.analysis.pipeline",
    "load_study_votes": "toolkit.analysis.pipeline",
    "read_votes": "toolkit.analysis.pipeline",
    "StudyLabels": "toolkit.analysis.study_labels",
    "item_aggregates": "toolkit.analysis.study_labels",
    "study_label_table": "toolkit.analysis.study_labels",
    "study_mos_labels": "toolkit.analysis.study_labels",
    "Bt500Screening": "toolkit.analysis.rejection",
    "bt500_screen": "toolkit.analysis.rejection",
    "fit_bt500": "toolkit.analysis.rejection",
    "fit_p913": "toolkit.analysis.rejection",
    "p913_bias": "toolkit.analysis.rejection",
    "ITEM_COLUMNS": "toolkit.analysis.result",
    "MOS_TABLE_COLUMNS": "toolkit.analysis.result",
    "RATER_COLUMNS": "toolkit.analysis.result",
    "SubjectModelResult": "toolkit.analysis.result",
    "ScreeningConfig": "toolkit.analysis.screening",
    "ScreeningReport": "toolkit.analysis.screening",
    "screen_raters": "toolkit.analysis.screening",
    "Votes": "toolkit.analysis.votes",
    "prepare_votes": "toolkit.analysis.votes",
    "AlphaResult": "toolkit.analysis.reliability",
    "IccResult": "toolkit.analysis.reliability",
    "Reliability": "toolkit.analysis.reliability",
    "icc2k": "toolkit.analysis.reliability",
    "krippendorff_alpha": "toolkit.analysis.reliability",
    "measure_reliability": "toolkit.analysis.reliability",
    "AGREEMENT_COLUMNS": "toolkit.analysis.model_agreement",
    "MatchedScores": "toolkit.analysis.model_agreement",
    "agreement_from_scores": "toolkit.analysis.model_agreement",
    "with_model_agreement": "toolkit.analysis.model_agreement",
    "ModelAgreement": "toolkit.analysis.model_agreement",
    "ModelAgreementConfig": "toolkit.analysis.model_agreement",
    "match_model_scores": "toolkit.analysis.model_agreement",
    "model_agreement": "toolkit.analysis.model_agreement",
    "rater_model_agreement": "toolkit.analysis.model_agreement",
    "read_model_agreement": "toolkit.analysis.model_agreement",
}

__all__ = list(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:  # the same names, eagerly, for type checkers
    from toolkit.analysis.agreement import (
        SplitHalfResult as SplitHalfResult,
    )
    from toolkit.analysis.agreement import (
        spearman_brown as spearman_brown,
    )
    from toolkit.analysis.agreement import (
        split_half_agreement as split_half_agreement,
    )
    from toolkit.analysis.mle import (
        fit_mle as fit_mle,
    )
    from toolkit.analysis.model_agreement import (
        AGREEMENT_COLUMNS as AGREEMENT_COLUMNS,
    )
    from toolkit.analysis.model_agreement import (
        MatchedScores as MatchedScores,
    )
    from toolkit.analysis.model_agreement import (
        ModelAgreement as ModelAgreement,
    )
    from toolkit.analysis.model_agreement import (
        ModelAgreementConfig as ModelAgreementConfig,
    )
    from toolkit.analysis.model_agreement import (
        agreement_from_scores as agreement_from_scores,
    )
    from toolkit.analysis.model_agreement import (
        match_model_scores as match_model_scores,
    )
    from toolkit.analysis.model_agreement import (
        model_agreement as model_agreement,
    )
    from toolkit.analysis.model_agreement import (
        rater_model_agreement as rater_model_agreement,
    )
    from toolkit.analysis.model_agreement import (
        read_model_agreement as read_model_agreement,
    )
    from toolkit.analysis.model_agreement import (
        with_model_agreement as with_model_agreement,
    )
    from toolkit.analysis.mos import (
        fit_mos as fit_mos,
    )
    from toolkit.analysis.mos import (
        item_statistics as item_statistics,
    )
    from toolkit.analysis.names import (
        SUBJECT_MODELS as SUBJECT_MODELS,
    )
    from toolkit.analysis.names import (
        ModelName as ModelName,
    )
    from toolkit.analysis.normalize import (
        ScaleMapping as ScaleMapping,
    )
    from toolkit.analysis.normalize import (
        fit_scale_mapping as fit_scale_mapping,
    )
    from toolkit.analysis.normalize import (
        rescale_range as rescale_range,
    )
    from toolkit.analysis.normalize import (
        zscore_votes as zscore_votes,
    )
    from toolkit.analysis.pipeline import (
        Analysis as Analysis,
    )
    from toolkit.analysis.pipeline import (
        AnalysisOptions as AnalysisOptions,
    )
    from toolkit.analysis.pipeline import (
        analyze_snapshot as analyze_snapshot,
    )
    from toolkit.analysis.pipeline import (
        analyze_study as analyze_study,
    )
    from toolkit.analysis.pipeline import (
        analyze_votes as analyze_votes,
    )
    from toolkit.analysis.pipeline import (
        clean_labels as clean_labels,
    )
    from toolkit.analysis.pipeline import (
        load_study_votes as load_study_votes,
    )
    from toolkit.analysis.pipeline import (
        read_votes as read_votes,
    )
    from toolkit.analysis.rejection import (
        Bt500Screening as Bt500Screening,
    )
    from toolkit.analysis.rejection import (
        bt500_screen as bt500_screen,
    )
    from toolkit.analysis.rejection import (
        fit_bt500 as fit_bt500,
    )
    from toolkit.analysis.rejection import (
        fit_p913 as fit_p913,
    )
    from toolkit.analysis.rejection import (
        p913_bias as p913_bias,
    )
    from toolkit.analysis.reliability import (
        AlphaResult as AlphaResult,
    )
    from toolkit.analysis.reliability import (
        IccResult as IccResult,
    )
    from toolkit.analysis.reliability import (
        Reliability as Reliability,
    )
    from toolkit.analysis.reliability import (
        icc2k as icc2k,
    )
    from toolkit.analysis.reliability import (
        krippendorff_alpha as krippendorff_alpha,
    )
    from toolkit.analysis.reliability import (
        measure_reliability as measure_reliability,
    )
    from toolkit.analysis.result import (
        ITEM_COLUMNS as ITEM_COLUMNS,
    )
    from toolkit.analysis.result import (
        MOS_TABLE_COLUMNS as MOS_TABLE_COLUMNS,
    )
    from toolkit.analysis.result import (
        RATER_COLUMNS as RATER_COLUMNS,
    )
    from toolkit.analysis.result import (
        SubjectModelResult as SubjectModelResult,
    )
    from toolkit.analysis.screening import (
        ScreeningConfig as ScreeningConfig,
    )
    from toolkit.analysis.screening import (
        ScreeningReport as ScreeningReport,
    )
    from toolkit.analysis.screening import (
        screen_raters as screen_raters,
    )
    from toolkit.analysis.study_labels import (
        StudyLabels as StudyLabels,
    )
    from toolkit.analysis.study_labels import (
        item_aggregates as item_aggregates,
    )
    from toolkit.analysis.study_labels import (
        study_label_table as study_label_table,
    )
    from toolkit.analysis.study_labels import (
        study_mos_labels as study_mos_labels,
    )
    from toolkit.analysis.subject_models import (
        fit_subject_model as fit_subject_model,
    )
    from toolkit.analysis.votes import (
        Votes as Votes,
    )
    from toolkit.analysis.votes import (
        prepare_votes as prepare_votes,
    )
