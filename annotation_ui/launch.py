"""Starting the Streamlit server for the app (what ``qalign ui`` runs after preparing the database)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

APP = Path(__file__).resolve().parent / "app.py"


def streamlit_command(port: int = 8501, host: str = "127.0.0.1") -> list[str]:
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP),
        "--server.port",
        str(port),
        "--server.address",
        host,
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        # Raters' media never change under a running server; watching files only costs CPU.
        "--server.fileWatcherType",
        "none",
        # One fixed look for every rater: no theme or settings menu (a dark theme would change the
        # surround of the stimuli being judged), and the light theme whatever the browser prefers.
        "--client.toolbarMode",
        "minimal",
        "--theme.base",
        "light",
        # Visitors see a generic message for an unexpected error; the details go to the console.
        "--client.showErrorDetails",
        "none",
    ]
    if "STREAMLIT_RUNNER_POST_SCRIPT_GC" not in os.environ:  # a deployment's own choice wins
        # Streamlit's full garbage collection after every script run was 85-90 % of a vote's server
        # CPU (120-140 ms against 21-35 ms without it, bench/annotation_e2e.py); Python's own
        # generational collector still runs.
        command += ["--runner.postScriptGC", "false"]
    return command


def run_app(db_url: str, port: int = 8501, host: str = "127.0.0.1", sample: bool = True) -> int:
    """Run the app until it is stopped; returns the server's exit code."""
    env = dict(os.environ, QALIGN_DB_URL=db_url, QALIGN_UI_SAMPLE="1" if sample else "0")
    command = streamlit_command(port, host)
    if os.name == "posix":
        # Become the server instead of waiting on it: a signal sent to `qalign ui` (Ctrl-C, a
        # supervisor's SIGTERM) then reaches Streamlit itself and no orphan is left behind.
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(command[0], command, env)
    process = subprocess.Popen(command, env=env)
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.terminate()
        try:
            return process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()
