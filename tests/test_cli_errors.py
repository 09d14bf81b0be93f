"""What a user sees when a command line is wrong, or something unexpected breaks: a short message and
an exit code, never a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest
import typer

from toolkit.cli import app, main


def _command_names() -> list[list[str]]:
    """Every command and sub-command of ``qalign`` as an argument list."""
    command = typer.main.get_command(app)
    names: list[list[str]] = []
    for name, sub in command.commands.items():  # type: ignore[attr-defined]
        if hasattr(sub, "commands"):
            names += [[name, child] for child in sub.commands]
        else:
            names.append([name])
    return names


def _run(argv: list[str], capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["qalign", *argv])
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capfd.readouterr()
    code = exit_info.value.code
    # rich draws usage errors in a box and wraps them: compare the words, not the layout
    words = " ".join((captured.out + captured.err).replace("│", " ").split())
    return (code if isinstance(code, int) else 1), words


def test_every_command_is_covered() -> None:
    names = {" ".join(n) for n in _command_names()}
    assert {"score", "convert", "analyze", "train", "study create", "study export", "db upgrade"} <= names


@pytest.mark.parametrize("argv", _command_names(), ids=lambda a: " ".join(a))
def test_a_typo_d_option_is_a_short_usage_error(argv, capfd, monkeypatch) -> None:
    code, output = _run([*argv, "--no-such-option"], capfd, monkeypatch)
    assert code == 2
    assert "No such option: --no-such-option" in output
    assert "Traceback" not in output and len(output) < 400


@pytest.mark.parametrize(
    "argv, message",
    [
        (["scor"], "No such command 'scor'"),
        (["analyze", "--modle", "mos", "x.csv"], "No such option: --modle"),
        (["analyze", "x.csv", "--model", "MLE_COX"], "'MLE_COX' is not one of"),
        (["score"], "Missing argument"),
        (["score", "photo.jpg"], "Missing option '--model'"),
        (["study", "create"], "Missing argument"),
        (["train", "--mode", "ful", "--out", "x"], "'ful' is not one of 'lora', 'full'"),
        (["ablate", "--mode", "half"], "'half' is not one of 'lora', 'full'"),
    ],
)
def test_usage_errors_name_the_problem(argv, message, capfd, monkeypatch) -> None:
    code, output = _run(argv, capfd, monkeypatch)
    assert code == 2 and message in output and "Traceback" not in output


def test_subject_models_accept_sureal_s_spelling(tmp_path, capfd, monkeypatch) -> None:
    votes = tmp_path / "votes.csv"
    rows = [f"i{i},r{r},{1 + (i + r) % 5}" for i in range(6) for r in range(4)]
    votes.write_text("item,rater,vote\n" + "\n".join(rows) + "\n")
    code, output = _run(["analyze", str(votes), "--model", "MLE_CO", "--splits", "0",
                         "--out", str(tmp_path / "items.csv")], capfd, monkeypatch)  # fmt: skip
    assert code == 0, output
    assert (tmp_path / "items.csv").is_file()


def test_version() -> None:
    out = subprocess.run([sys.executable, "-m", "toolkit.cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("qalign ")


def test_an_unexpected_error_is_one_line_unless_debugging(tmp_path, capfd, monkeypatch) -> None:
    import toolkit.store.overview

    def broken(session):  # noqa: ANN001, ANN202
        raise RuntimeError("disk on fire\nsecond line")

    monkeypatch.setattr(toolkit.store.overview, "studies_overview", broken)
    monkeypatch.delenv("QALIGN_DEBUG", raising=False)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    from toolkit.store import upgrade

    upgrade(url)
    code, output = _run(["study", "list", "--db", url], capfd, monkeypatch)
    assert code == 1 and "Traceback" not in output
    assert output.startswith("error: unexpected RuntimeError: disk on fire (run again")
    assert "second line" not in output and "--debug" in output and "QALIGN_DEBUG=1" in output

    monkeypatch.setattr(sys, "argv", ["qalign", "--debug", "study", "list", "--db", url])
    with pytest.raises(RuntimeError, match="disk on fire"):
        main()
    monkeypatch.delenv("QALIGN_DEBUG", raising=False)
