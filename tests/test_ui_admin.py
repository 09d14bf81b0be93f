"""The annotation app's admin pages through streamlit.testing (no browser): sign-in, the study
overview, the Raters and Results tabs at scale, and the cache that spares a refit per click."""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
import streamlit.testing.v1 as streamlit_testing
from sqlalchemy import insert
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.testing.v1 import AppTest

from annotation_ui.text import plain
from toolkit.store import add_rater, get_study, import_votes
from toolkit.store.admin_views import study_board, study_version
from toolkit.store.raters import set_rater_excluded
from toolkit.store.schema import Item, Rating, RatingSession, utcnow
from toolkit.store.studies import create_study

from fixtures_ui import ADMIN_SECRET, app_store, make_study

ROOT = Path(__file__).resolve().parents[1] / "annotation_ui"
ADMIN = str(ROOT / "views" / "admin.py")
SECRET = ADMIN_SECRET


@pytest.fixture()
def store(tmp_path, monkeypatch):
    s = app_store(tmp_path, monkeypatch)
    yield s
    s.dispose()


def admin_page(secret=SECRET):
    at = AppTest.from_file(ADMIN, default_timeout=120).run()
    at.text_input(key="admin_secret").input(secret)
    return at.button(key="FormSubmitter:admin_login-Sign in").click().run()


def open_study(at, study, tab="Progress"):
    at.selectbox(key="admin_study").set_value(study).run()
    at.session_state["admin_tab"] = tab
    return at.run()


def texts(at):
    return " ".join(
        str(e.value) for kind in ("markdown", "caption", "info", "success", "warning", "error") for e in at.get(kind)
    )


def bulk_study(store, root, name, n_items, target_votes=3):
    """A study of ``n_items`` test items inserted directly: no media files to hash at this size."""
    with store.session() as s:
        study = create_study(s, name, media_root=root, target_votes=target_votes)
        s.flush()
        s.execute(
            insert(Item),
            [
                dict(
                    study_id=study.id,
                    path=f"img_{k:05d}.jpg",
                    kind="image",
                    sha256=f"{k:064x}",
                    content_group=f"content_{k // 4:05d}",
                    role="test",
                    tolerance=1,
                    priority=0,
                )
                for k in range(n_items)
            ],
        )


def vote(store, study, items, raters, seed=0):
    """Every rater votes on every item, votes near a per-item quality; returns the vote table."""
    rng = np.random.default_rng(seed)
    quality = rng.uniform(1, 5, len(items))
    frame = pd.DataFrame(
        [
            (item, rater, int(np.clip(np.rint(q + rng.normal(0, 0.7)), 1, 5)))
            for item, q in zip(items, quality)
            for rater in raters
        ],
        columns=["item", "rater", "vote"],
    )
    with store.session() as s:
        import_votes(s, get_study(s, study), frame)
    return frame


# --------------------------------------------------------------------------- sign-in


def test_admin_needs_the_secret(store, tmp_path):
    make_study(store, tmp_path / "media")
    at = admin_page("wrong secret")
    assert [e.value for e in at.error] == ["Wrong admin secret."]
    assert not at.tabs and not at.dataframe


def test_wrong_admin_secrets_lock_out_new_sessions_too(store, tmp_path):
    make_study(store, tmp_path / "media")
    for _ in range(5):
        assert [e.value for e in admin_page("wrong secret").error] == ["Wrong admin secret."]
    at = admin_page()  # a fresh browser session, with the right secret: refused until the wait is over
    [message] = [e.value for e in at.error]
    assert message.startswith("too many wrong admin secrets: try again after ") and message.endswith(" s)")
    assert not at.tabs


# --------------------------------------------------------------------------- overview


def test_study_board_counts_progress_and_the_last_hour(store, tmp_path):
    bulk_study(store, tmp_path, "a", 4, target_votes=2)
    bulk_study(store, tmp_path, "b", 3, target_votes=5)
    items = [f"img_{k:05d}.jpg" for k in range(4)]
    with store.session() as s:
        import_votes(
            s,
            get_study(s, "a"),
            pd.DataFrame(
                {"item": items[:3] + items[:1] + ["img_00000.jpg"], "rater": ["r1"] * 3 + ["r2", "r3"], "vote": 3}
            ),
        )
        set_rater_excluded(s, get_study(s, "a"), "r3", True)
    with store.session() as s:
        board = {row.study: row for row in study_board(s)}
    # img_00000 has two valid votes (r1, r2; r3 is excluded): the only complete item. Imported
    # votes are no activity: none in the last hour.
    a = board["a"]
    assert (a.test_items, a.complete_items, a.votes, a.valid_votes) == (4, 1, 5, 4)
    assert a.target_fraction == pytest.approx((2 + 1 + 1) / (4 * 2))
    assert (a.votes_last_hour, a.raters_active, a.raters) == (0, 0, 3)
    imported_at = a.last_vote_at
    assert imported_at is not None
    with store.session() as s:  # two raters vote in a sitting of the app, one of them two hours ago
        study = get_study(s, "a")
        now = utcnow()
        for name, answered in (("app1", now - timedelta(hours=2)), ("app2", now)):
            rater, _ = add_rater(s, study, name)
            sitting = RatingSession(rater_id=rater.id, started_at=answered, last_seen_at=now, n_votes=1)
            s.add(sitting)
            s.flush()
            s.add(
                Rating(
                    study_id=study.id,
                    item_id=study.items[3].id,
                    rater_id=rater.id,
                    level=4,
                    session_id=sitting.id,
                    answered_at=answered,
                )
            )
        s.commit()
    with store.session() as s:
        board = {row.study: row for row in study_board(s)}
    a, b = board["a"], board["b"]
    assert (a.votes_last_hour, a.raters_active, a.raters, a.votes) == (1, 1, 5, 7)
    assert a.last_vote_at is not None and a.last_vote_at >= imported_at
    assert (b.test_items, b.complete_items, b.votes, b.votes_last_hour, b.last_vote_at) == (3, 0, 0, 0, None)
    with store.session() as s:
        assert [row.study for row in study_board(s, names={"b"})] == ["b"]


def test_study_version_changes_with_votes_and_exclusions(store, tmp_path):
    bulk_study(store, tmp_path, "a", 3)
    with store.session() as s:
        before = study_version(s, get_study(s, "a"))
    vote(store, "a", ["img_00000.jpg"], ["r1", "r2"])
    with store.session() as s:
        after = study_version(s, get_study(s, "a"))
        set_rater_excluded(s, get_study(s, "a"), "r2", True)
    with store.session() as s:
        excluded = study_version(s, get_study(s, "a"))
        assert study_version(s, get_study(s, "a")) == excluded
    assert len({before, after, excluded}) == 3


def test_the_admin_lands_on_the_overview_of_every_study(store, tmp_path):
    make_study(store, tmp_path / "one", n_test=3, name="pilot")
    bulk_study(store, tmp_path, "large", 40, target_votes=2)
    vote(store, "large", [f"img_{k:05d}.jpg" for k in range(10)], ["r1", "r2"])
    at = admin_page()
    assert not at.exception
    assert [t.label for t in at.tabs] == ["Overview", "New study"]
    [board] = [d.value for d in at.dataframe]
    assert board["study"].tolist() == ["pilot", "large"]
    rows = board.set_index("study")
    assert rows.loc["large", "complete"] == "10 / 40" and rows.loc["pilot", "complete"] == "0 / 3"
    # Imported votes: counted, but no activity of the last hour.
    assert rows.loc["large", "votes"] == 20 and rows.loc["large", "votes_last_hour"] == 0
    assert rows.loc["large", "raters_active"] == 0 and rows.loc["pilot", "votes"] == 0
    assert rows.loc["large", "progress"] == pytest.approx(100 * 20 / 80)
    assert at.selectbox(key="admin_study").value == ""  # the overview, until a study is chosen
    # The counts are read again after a while or on Refresh, not on every click.
    vote(store, "large", [f"img_{k:05d}.jpg" for k in range(10, 12)], ["r1", "r2"])
    at.run()
    assert at.dataframe[0].value.set_index("study").loc["large", "votes"] == 20
    at.button(key="overview_refresh").click().run()
    rows = at.dataframe[0].value.set_index("study")
    assert rows.loc["large", "votes"] == 24 and rows.loc["large", "complete"] == "12 / 40"
    open_study(at, "large")
    assert [t.label for t in at.tabs] == ["Progress", "Raters", "Results", "Export", "Tokens"]
    assert not at.exception


def test_the_new_study_form_is_a_tab_of_the_overview(store, tmp_path):
    from fixtures_ui import write_images

    write_images(tmp_path / "new", ["x.png", "y.png"])
    at = admin_page()
    assert "No study yet" in texts(at)
    at.session_state["admin_home_tab"] = "New study"
    at.run()
    at.text_input(key="new_name").input("fresh")
    at.text_input(key="new_media").input(str(tmp_path / "new"))
    at.button(key="FormSubmitter:new_study-Create study").click().run()
    assert not at.exception and "created with 2 items" in at.success[0].value
    # The new study opens at once.
    assert at.selectbox(key="admin_study").value == "fresh"
    assert [t.label for t in at.tabs] == ["Progress", "Raters", "Results", "Export", "Tokens"]


def test_a_study_secret_opens_that_study_only(store, tmp_path):
    from toolkit.store.admin_secret import set_study_admin_secret

    bulk_study(store, tmp_path, "pilot", 5)
    bulk_study(store, tmp_path, "other", 5)
    with store.session() as s:
        set_study_admin_secret(s, get_study(s, "pilot"), "pilot-only-secret")
    at = admin_page("pilot-only-secret")
    assert not at.exception and not at.error
    assert at.selectbox(key="admin_study").options == ["All studies (overview)", "pilot"]
    assert not at.tabs  # no New study tab: creating studies takes the global secret
    [board] = [d.value for d in at.dataframe]
    assert board["study"].tolist() == ["pilot"]
    open_study(at, "pilot", "Raters")
    assert not at.exception and [t.label for t in at.tabs][0] == "Progress"
    # The global secret opens every study and the form.
    at = admin_page()
    assert at.selectbox(key="admin_study").options == ["All studies (overview)", "pilot", "other"]
    assert [t.label for t in at.tabs] == ["Overview", "New study"]


def test_progress_tab_counts_and_names_missing_files(store, tmp_path):
    media = tmp_path / "media"
    make_study(store, media, n_test=4, target_votes=2)
    with store.session() as s:
        import_votes(
            s, get_study(s, "pilot"), pd.DataFrame({"item": ["test_00.png"] * 2, "rater": ["a", "b"], "vote": [4, 5]})
        )
    (media / "test_03.png").unlink()
    at = open_study(admin_page(), "pilot", "Progress")
    at.button(key="check_media").click().run()
    assert not at.exception and "1 missing, 0 back on disk." in texts(at)
    at.run()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics == {"Items": "4", "Raters": "2", "Votes": "2", "Target reached": "25%"}
    assert any("missing on disk" in w.value for w in at.warning)
    missing = next(d.value for d in at.dataframe if list(d.value.columns) == ["item", "role", "kind"])
    assert missing["item"].tolist() == ["test_03.png"]
    table = next(d.value for d in at.dataframe if "valid_votes" in d.value.columns)
    assert table["item"].tolist()[-1] == "test_00.png" and table["valid_votes"].tolist()[-1] == 2  # fewest first
    at.text_input(key="progress_search").input("test_00").run()
    table = next(d.value for d in at.dataframe if "valid_votes" in d.value.columns)
    assert table["item"].tolist() == ["test_00.png"] and "items 1–1 of 1 matching; 4 in the study." in texts(at)


def test_progress_table_pages_searches_and_orders():
    from annotation_ui.admin_progress import progress_page

    items = pd.DataFrame(
        {
            "item_id": range(120),
            "item": [f"img_{k:03d}.png" for k in range(120)],
            "valid_votes": [k % 7 for k in range(120)],
            "votes": [k % 7 for k in range(120)],
            "on_screen": [int(k == 42) for k in range(120)],
        }
    )
    first, total = progress_page(items, "", "Fewest valid votes first", 1, 50)
    assert total == 120 and len(first) == 50 and "item_id" not in first.columns
    assert first["valid_votes"].is_monotonic_increasing and first["item"].iloc[0] == "img_000.png"
    last, _ = progress_page(items, "", "Fewest valid votes first", 3, 50)
    assert len(last) == 20 and set(first["item"]).isdisjoint(last["item"])
    assert progress_page(items, "", "On screen now first", 1, 5)[0]["item"].iloc[0] == "img_042.png"
    found, n = progress_page(items, "IMG_11", "Item name", 1, 50)
    assert n == 10 and found["item"].tolist() == [f"img_{k}.png" for k in range(110, 120)]


# --------------------------------------------------------------------------- raters


def test_raters_tab_puts_flagged_raters_first_with_their_reasons(store, tmp_path):
    straightliner_study(store, tmp_path, n_items=12)
    at = open_study(admin_page(), "pilot", "Raters")
    assert not at.exception
    table = next(d.value for d in at.dataframe if "screening_flags" in d.value.columns)
    assert table["rater"].tolist()[0] == "zed" and table["flagged"].tolist() == [True] + [False] * 4
    reason = table["screening_flags"].iloc[0]
    assert reason.startswith("straightlining") and f"**zed**: {plain(reason)}" in at.warning[0].value
    # The flagged row is highlighted in the grid, the others are not.
    styles = next(d for d in at.dataframe if "screening_flags" in d.value.columns).proto.arrow_data.styler.styles
    last = len(table.columns) - 1
    assert "#fde2e1" in styles and f"_row0_col{last} " in styles and "_row1_" not in styles
    assert "Screening" in [h.value for h in at.subheader]
    # New votes: the figures stay, with a note, until the administrator updates them.
    vote(store, "pilot", ["img_00000.jpg"], ["eve"])
    at.run()
    assert "The study has changed since these figures were made (1 new vote(s))." in texts(at)
    assert "eve" not in next(d.value for d in at.dataframe if "screening_flags" in d.value.columns)["rater"].tolist()
    at.button(key="raters_refresh").click().run()
    assert "eve" in next(d.value for d in at.dataframe if "screening_flags" in d.value.columns)["rater"].tolist()
    assert "has changed" not in texts(at)


def test_raters_tab_pages_many_raters_and_overrides_by_name(store, tmp_path, monkeypatch):
    from annotation_ui import admin_raters

    monkeypatch.setattr(admin_raters, "MAX_RATER_CHOICES", 10)  # these 61 raters count as many
    bulk_study(store, tmp_path, "pilot", 12)
    items = [f"img_{k:05d}.jpg" for k in range(12)]
    vote(store, "pilot", items, [f"r{k:02d}" for k in range(60)])
    with store.session() as s:
        import_votes(s, get_study(s, "pilot"), pd.DataFrame({"item": items, "rater": "zed", "vote": 3}))
    at = open_study(admin_page(), "pilot", "Raters")
    assert not at.exception
    table = next(d.value for d in at.dataframe if "screening_flags" in d.value.columns)
    assert len(table) == 50 and table["rater"].iloc[0] == "zed"  # one page, flagged first
    assert "raters 1–50 of 61 matching; 61 raters in all." in texts(at)
    at.text_input(key="raters_search").input("r5").run()
    table = next(d.value for d in at.dataframe if "screening_flags" in d.value.columns)
    assert table["rater"].tolist() == [f"r{k}" for k in range(50, 60)]
    at.selectbox(key="raters_sort").set_value("Rater name").run()
    # Only the flagged raters' screening below, every rater's in a download.
    screening = at.dataframe[-1].value
    assert list(screening.index) == ["zed"]
    assert any("screening of every rater" in b.proto.label for b in at.get("download_button"))
    at.text_input(key="override_rater").input("nobody")
    at.selectbox(key="override_decision").set_value("Exclude (leave their votes out)")
    at.text_input(key="override_reason").input("test")
    at.button(key="FormSubmitter:override-Save decision").click().run()
    assert len(at.error) == 1 and "nobody" in at.error[0].value  # an unknown name: one line, no traceback
    at.text_input(key="override_rater").input("zed")
    at.button(key="FormSubmitter:override-Save decision").click().run()
    assert not at.exception and not at.error
    with store.session() as s:
        assert next(r for r in get_study(s, "pilot").raters if r.name == "zed").excluded


def straightliner_study(store, root, n_items=30):
    """Four raters voting near each item's quality, and zed, who gives one level to every item."""
    bulk_study(store, root, "pilot", n_items)
    items = [f"img_{k:05d}.jpg" for k in range(n_items)]
    votes = vote(store, "pilot", items, ["ann", "bob", "cat", "dan"])
    with store.session() as s:
        import_votes(s, get_study(s, "pilot"), pd.DataFrame({"item": items, "rater": "zed", "vote": 3}))
    return items, votes


def test_rule_flags_show_in_the_overview_and_raters_tab_and_an_override_keeps_the_rater(store, tmp_path):
    from toolkit.store.exclusion import run_exclusion
    from toolkit.store.study_settings import configure_protocol

    straightliner_study(store, tmp_path)
    with store.session() as s:
        study = get_study(s, "pilot")
        configure_protocol(s, study, max_level_share=0.9)
        run_exclusion(s, study)
    at = admin_page()
    [board] = [d.value for d in at.dataframe]
    assert board.set_index("study").loc["pilot", "flagged_raters"] == 1
    open_study(at, "pilot", "Raters")
    table = next(d.value for d in at.dataframe if "rule_flags" in d.value.columns).set_index("rater")
    assert table.index[0] == "zed" and table.loc["zed", "excluded"] and table.loc["zed", "rule_flags"]
    assert table.loc["zed", "rule_flags"] in at.warning[0].value.replace("\\", "")

    at.selectbox(key="override_rater").set_value("zed")
    at.selectbox(key="override_decision").set_value("Keep (count their votes)")
    at.button(key="FormSubmitter:override-Save decision").click().run()
    assert [e.value for e in at.error] == ["overriding the exclusion of rater 'zed' needs a reason"]
    at.text_input(key="override_reason").input("asked: a uniform set of images")
    at.button(key="FormSubmitter:override-Save decision").click().run()
    assert not at.exception and not at.error
    table = next(d.value for d in at.dataframe if "rule_flags" in d.value.columns).set_index("rater")
    assert not table.loc["zed", "excluded"]
    assert table.loc["zed", "override"] == "keep: asked: a uniform set of images (global admin)"
    with store.session() as s:
        run_exclusion(s, get_study(s, "pilot"))  # a later rule run respects the decision
    at.run()
    table = next(d.value for d in at.dataframe if "rule_flags" in d.value.columns).set_index("rater")
    assert not table.loc["zed", "excluded"] and table.loc["zed", "flagged"]


def test_raters_are_compared_with_an_uploaded_model_score_file(store, tmp_path):
    items, votes = straightliner_study(store, tmp_path)
    mos = votes.groupby("item")["vote"].mean()
    scores = pd.DataFrame({"path": [f"/data/images/{i}" for i in items], "score": mos.reindex(items).to_numpy()})
    at = open_study(admin_page(), "pilot", "Raters")
    at.file_uploader(key="model_scores").set_value(("scores.csv", scores.to_csv(index=False).encode(), "text/csv"))
    at.run()
    assert not at.exception and not at.error
    qa = next(d.value for d in at.dataframe if "srcc_model" in d.value.columns).set_index("rater")
    assert qa.loc["ann", "srcc_model"] > 0.6 and qa.loc["ann", "common_items"] == 30
    assert np.isnan(qa.loc["zed", "srcc_model"])  # one level throughout: no rank correlation
    assert "Items matched" in [m.label for m in at.metric]
    at.file_uploader(key="model_scores").set_value(("bad.csv", b"path,score\nnope.jpg,1\n", "text/csv"))
    at.run()
    [message] = [e.value for e in at.error]
    assert "matched" in message and "\n" not in message


# --------------------------------------------------------------------------- results


def test_results_at_2000_items_draw_a_bounded_page(store, tmp_path):
    bulk_study(store, tmp_path, "large", 2000)
    items = [f"img_{k:05d}.jpg" for k in range(2000)]
    vote(store, "large", items, ["r1", "r2", "r3"])
    at = open_study(admin_page(), "large", "Results")
    assert not at.exception
    assert len(at.get("image")) == 3  # the MOS histogram, the worst and the best items
    reliability = next(d.value for d in at.dataframe if "measure" in d.value.columns).set_index("measure")
    assert list(reliability.index) == [
        "Split-half SRCC",
        "Split-half PLCC",
        "Krippendorff's alpha (ordinal)",
        "ICC(2,k)",
        "ICC(2,1)",
    ]
    interval = reliability["95% CI"].str.split(" – ", expand=True).astype(float)
    assert (interval[0] <= reliability["estimate"]).all() and (reliability["estimate"] <= interval[1]).all()
    assert reliability.loc["ICC(2,k)", "estimate"] > reliability.loc["ICC(2,1)", "estimate"] > 0.5
    table = next(d.value for d in at.dataframe if "votes_excellent" in d.value.columns)
    assert len(table) == 25 and table["mos"].is_monotonic_decreasing
    assert "items 1–25 of 2,000 matching" in texts(at)
    at.text_input(key="results_search").input("img_0199").run()  # img_01990 ... img_01999
    table = next(d.value for d in at.dataframe if "votes_excellent" in d.value.columns)
    assert sorted(table["item"]) == [f"img_{k:05d}.jpg" for k in range(1990, 2000)]
    assert len(at.get("image")) == 3


def test_ranked_plots_and_table_pages_stay_bounded():
    from annotation_ui.admin_plots import MAX_RANKED, mos_histogram, ranked_items
    from annotation_ui.admin_results import table_page

    rng = np.random.default_rng(1)
    mos = rng.uniform(1, 5, 10_000)
    table = pd.DataFrame(
        {
            "item": [f"folder/item_{k:05d}.png" for k in range(10_000)],
            "mos": mos,
            "ci_low": mos - 0.3,
            "ci_high": mos + 0.3,
            "sd": 0.5,
            "n": 15,
            "level": 3,
            **{c: 3 for c in ("votes_excellent", "votes_good", "votes_fair", "votes_poor", "votes_bad")},
            "content_group": "g",
        }
    )
    worst = ranked_items(table, 10_000, worst=True)
    labels = [t.get_text() for t in worst.axes[0].get_yticklabels()]
    assert len(labels) == MAX_RANKED and labels[0].startswith(table.loc[mos.argmin(), "item"])
    assert worst.get_size_inches()[1] < 14
    assert mos_histogram(mos, ["a", "b", "c", "d", "e"]).get_size_inches()[1] < 4
    page, total = table_page(table, "ITEM_0999", "MOS, worst first", 1, 25)
    assert total == 10 and len(page) == 10 and page["mos"].is_monotonic_increasing
    page, total = table_page(table, "", "Item name", 400, 25)
    assert total == 10_000 and page["item"].tolist()[-1] == "folder/item_09999.png"


def test_first_rows_are_the_head_of_the_full_sort_ties_included():
    from annotation_ui.paged_table import first_rows, sorted_page

    rng = np.random.default_rng(3)
    n = 5000
    table = pd.DataFrame(
        {
            "item": [f"i{k:05d}" for k in rng.permutation(n)],
            "mos": rng.integers(1, 9, n) / 2,  # many ties: the names decide among them
            "n": rng.integers(0, 4, n),
            "share": np.where(rng.random(n) < 0.1, np.nan, rng.random(n)),  # NaN: the plain sort
        }
    )
    for column in ("mos", "n", "share", "item"):
        for ascending in (True, False):
            keys = [column] if column == "item" else [column, "item"]
            full = table.sort_values(keys, ascending=[ascending] + [True] * (len(keys) - 1), kind="stable")
            for count in (1, 25, 400, n):
                expected = full.head(count).reset_index(drop=True)
                got = first_rows(table, column, ascending, count).reset_index(drop=True)
                pd.testing.assert_frame_equal(got, expected)
            page = sorted_page(table, column, ascending, 3, 25)
            pd.testing.assert_frame_equal(page, full.iloc[50:75].reset_index(drop=True))


def test_results_refit_only_when_votes_arrive(store, tmp_path, monkeypatch):
    from annotation_ui import admin_data

    calls = {"labels": 0, "fit": 0}

    def counted(name: str, what: str) -> None:
        real = getattr(admin_data, name)

        def call(*args, **kwargs):
            calls[what] += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(admin_data, name, call)

    counted("study_label_table", "labels")  # a subject model's labels
    counted("study_mos_labels", "labels")  # the plain MOS, from the stored histograms
    counted("analyze_votes", "fit")
    bulk_study(store, tmp_path, "pilot", 30)
    items = [f"img_{k:05d}.jpg" for k in range(30)]
    vote(store, "pilot", items[:20], [f"r{k}" for k in range(6)])
    at = open_study(admin_page(), "pilot", "Results")
    assert calls == {"labels": 1, "fit": 1}
    at.selectbox(key="results_sort").set_value("Fewest votes first").run()
    at.number_input(key="results_n").set_value(8).run()
    at.session_state["admin_tab"] = "Raters"
    at.run()
    at.session_state["admin_tab"] = "Results"
    at.run()
    assert not at.exception and calls == {"labels": 1, "fit": 1}  # clicks reuse the fit
    vote(store, "pilot", items[20:21], ["r1"])
    at.run()
    # A new vote: the figures stay those of the fit (no refit per click while votes stream in)
    # and say so, until the administrator updates them: then fitted again, once.
    assert calls == {"labels": 1, "fit": 1}
    assert "The study has changed since these figures were made (1 new vote(s))." in texts(at)
    at.button(key="results_refresh").click().run()
    assert calls == {"labels": 2, "fit": 2} and "has changed" not in texts(at)
    at.run()
    assert calls == {"labels": 2, "fit": 2}
    at.selectbox(key="results_model").set_value("p913").run()
    assert calls == {"labels": 3, "fit": 3} and not at.exception
    assert "Raters in the p913 fit" in [h.value for h in at.subheader]
    at.selectbox(key="results_model").set_value("mos").run()
    assert calls == {"labels": 3, "fit": 3}  # the earlier model's fit is still cached


def test_results_of_a_large_study_show_the_labels_and_compute_reliability_on_request(store, tmp_path, monkeypatch):
    from annotation_ui import admin_data, admin_results

    monkeypatch.setattr(admin_results, "AUTO_FIT_VOTES", 100)  # this study's 120 votes count as large
    fits = []
    real_fit = admin_data.analyze_votes
    monkeypatch.setattr(admin_data, "analyze_votes", lambda *a, **k: fits.append(1) or real_fit(*a, **k))
    bulk_study(store, tmp_path, "large", 30)
    vote(store, "large", [f"img_{k:05d}.jpg" for k in range(30)], [f"r{k}" for k in range(4)])
    at = open_study(admin_page(), "large", "Results")
    assert not at.exception and not fits
    assert not any("measure" in d.value.columns for d in at.dataframe)  # no reliability yet
    table = next(d.value for d in at.dataframe if "votes_excellent" in d.value.columns)
    assert len(table) == 25 and len(at.get("image")) == 3  # the labels, the figures and the table at once
    assert any("read all 120 votes" in c.value for c in at.caption)
    at.button(key="results_fit").click().run()
    assert not at.exception and fits == [1]
    assert any("measure" in d.value.columns for d in at.dataframe)
    at.selectbox(key="results_sort").set_value("Item name").run()  # asked once for this version: kept
    assert fits == [1] and any("measure" in d.value.columns for d in at.dataframe)


class RecordingMediaStorage(MemoryMediaFileStorage):
    """AppTest's in-memory media storage, kept after the run so a test can read a download's bytes."""

    files: ClassVar[dict[str, bytes]] = {}

    def load_and_get_id(self, path_or_data, mimetype, kind, filename=None):
        file_id = super().load_and_get_id(path_or_data, mimetype, kind, filename)
        RecordingMediaStorage.files[file_id] = self.get_file(file_id).content
        return file_id


def downloaded(button) -> bytes:
    return RecordingMediaStorage.files[Path(button.proto.url).stem]


def test_results_aggregates_and_dataset_leave_an_excluded_rater_out(store, tmp_path, monkeypatch):
    monkeypatch.setattr(streamlit_testing.app_test, "MemoryMediaFileStorage", RecordingMediaStorage)
    monkeypatch.setattr(RecordingMediaStorage, "files", {})
    make_study(store, tmp_path / "media", n_test=3)
    # With carol, both items have MOS 3.33; without her test_01 (4.5) ranks above test_00 (2.5).
    votes = pd.DataFrame(
        {
            "item": ["test_00.png"] * 3 + ["test_01.png"] * 3,
            "rater": ["alice", "bob", "carol"] * 2,
            "vote": [2, 3, 5, 5, 4, 1],
        }
    )
    with store.session() as s:
        study = get_study(s, "pilot")
        import_votes(s, study, votes)
        set_rater_excluded(s, study, "carol", True)

    at = open_study(admin_page(), "pilot", "Results")
    assert not at.exception
    results = next(
        d.value
        for d in at.dataframe
        if list(d.value.columns[:2]) == ["item", "mos"]
        and "level" in d.value.columns
        and "votes_excellent" in d.value.columns
    )
    assert results["item"].tolist() == ["test_01.png", "test_00.png"]  # best first
    assert results["mos"].tolist() == pytest.approx([4.5, 2.5]) and results["n"].tolist() == [2, 2]
    assert "1 rater(s) excluded by the admin; their 2 vote(s) are not counted" in texts(at)

    at.session_state["admin_tab"] = "Export"
    at.run()
    button = next(b for b in at.get("download_button") if "aggregates" in b.proto.label)
    aggregates = pd.read_csv(io.BytesIO(downloaded(button))).set_index("item")
    assert aggregates.loc["test_02.png", "n"] == 0  # unrated items stay in the download
    for row in results.itertuples():
        assert aggregates.loc[row.item, "mos"] == pytest.approx(row.mos)
        assert aggregates.loc[row.item, "n"] == row.n and aggregates.loc[row.item, "level"] == row.level
    raw = next(b for b in at.get("download_button") if "raw votes" in b.proto.label)
    assert len(pd.read_csv(io.BytesIO(downloaded(raw)))) == 6  # the stored record keeps carol's votes

    out = tmp_path / "dataset"
    at.text_input(key="hf_out").input(str(out))
    at.text_input(key="hf_split").input("")
    at.button(key="FormSubmitter:hf_export-Write dataset").click().run()
    assert not at.exception and "Dataset of 2 items written" in at.success[0].value
    written = pd.read_csv(out / "items.csv").set_index("path")
    assert written.loc["test_01.png", "mos"] == pytest.approx(4.5)
    assert written.loc["test_00.png", "mos"] == pytest.approx(2.5)
