"""plot_stats.py and demo.py on bad input and Ctrl-C: one line naming the problem and the fix, no traceback.

plot_stats.py cases run in this process through cli.run, as `python plot_stats.py` would run them (fast);
one also runs as a real subprocess. demo.py runs as a subprocess, stopped at its first step.
"""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import warnings

import numpy as np
import pytest
from helpers import ROOT, TINY_PIXELCNN, assert_one_line_error, run_main

TINY_STATS_RUN = [*TINY_PIXELCNN, "--levels", "2", "-e", "1", "-b", "64", "--stats"]  # the later --levels wins


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """{name: path}: a tiny run trained with --stats, a log.json without stats, a regular file."""
    import train

    tmp = tmp_path_factory.mktemp("plot_stats")
    train.main(TINY_STATS_RUN + ["-o", str(tmp / "run")])
    history = json.loads((tmp / "run" / "log.json").read_text())
    (tmp / "plain").mkdir()  # what a run trained without --stats logs
    (tmp / "plain" / "log.json").write_text(json.dumps([{k: v for k, v in r.items() if k != "stats"} for r in history]))
    (tmp / "file").write_text("a regular file: nothing can be created under it")
    (tmp / "clash_data.png").mkdir()  # a folder where plot_stats.py would write a PNG
    return {
        "tmp": str(tmp),
        "run": str(tmp / "run"),
        "plain": str(tmp / "plain"),
        "file": str(tmp / "file"),
        "names": list(history[-1]["stats"]),
    }


def plot_stats(argv, capsys, monkeypatch):
    """Run plot_stats.py's main in this process under cli.run; returns (exit status, stdout, stderr)."""
    status = run_main("plot_stats.py", argv, monkeypatch)
    out, err = capsys.readouterr()
    return status, out, err


CASES = [  # (id, argv ({name} from the run fixture), fragment the error line must hold)
    (
        "layers-not-a-regex",
        ["{run}", "--layers", "("],
        "--layers '(' is not a valid regular expression (missing ), unterminated subpattern at position 0); "
        "fix the pattern, or escape",
    ),
    ("layers-unterminated-set", ["{run}", "--layers", "blocks.[0"], "unterminated character set"),
    (
        "output-folder-missing",
        ["{run}", "-o", "{tmp}/missing/x"],
        "--output '{tmp}/missing/x': folder '{tmp}/missing' does not exist; create the folder",
    ),
    ("output-under-a-file", ["{run}", "-o", "{file}/x"], "folder '{file}' is a file, not a folder"),
    (
        "output-png-is-a-folder",
        ["{run}", "-o", "{tmp}/clash"],
        "cannot write '{tmp}/clash_data.png' (Is a directory); pick another prefix",
    ),
    ("no-stats", ["{plain}"], "has no layer statistics; train with --stats"),
    ("no-stats-with-layers", ["{plain}", "--layers", "out"], "has no layer statistics; train with --stats"),
    ("missing-log", ["{tmp}/missing"], "cannot read"),
]


@pytest.mark.parametrize("argv,fragment", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_plot_stats_bad_input_is_one_line_error(run, argv, fragment, capsys, monkeypatch):
    status, out, err = plot_stats([a.format(**run) for a in argv], capsys, monkeypatch)
    assert_one_line_error(status, err, fragment.format(**run))
    assert "wrote" not in out, "nothing is drawn before the input is checked"


def test_layers_that_match_nothing_name_the_recorded_parameters(run, capsys, monkeypatch):
    status, _, err = plot_stats([run["run"], "--layers", "nomatch"], capsys, monkeypatch)
    names = run["names"]
    assert_one_line_error(status, err, f"--layers 'nomatch' matched none of the {len(names)} recorded parameters")
    assert "train with --stats" not in err, "the stats exist: only the pattern is wrong"
    assert ", ".join(names[:3]) in err, "a few recorded names show what a pattern can match"


def test_layers_pick_the_matching_parameters(run, tmp_path, capsys, monkeypatch):
    pattern = r"^blocks\.0\..*weight$"
    matching = [n for n in run["names"] if re.search(pattern, n)]
    assert 0 < len(matching) < len(run["names"])
    argv = [run["run"], "--layers", pattern, "-o", str(tmp_path / "s")]
    status, out, err = plot_stats(argv, capsys, monkeypatch)
    assert status == 0, err
    for which in ("data", "grad"):
        assert f"wrote {tmp_path / 's'}_{which}.png ({len(matching)} parameters)" in out
        assert (tmp_path / f"s_{which}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_stats_script_bad_regex_is_one_line_error(run):
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "plot_stats.py"), run["run"], "--layers", "("],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert_one_line_error(result.returncode, result.stderr, "is not a valid regular expression")


def demo(out, **popen):
    """Start demo.py writing under `out`, in a process group of its own (what a terminal's Ctrl-C reaches)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")  # lines arrive as printed, not when a buffer fills
    return subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "demo.py"), "--out", str(out)],
        cwd=ROOT,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        **popen,
    )


def stop(child):
    if child.poll() is None:  # the whole demo, with the script it runs, never outlives the test
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()


def test_demo_stops_at_a_failing_step_with_its_status(run):
    child = demo(os.path.join(run["file"], "demo"))  # train.py, its first step, cannot create its --out
    try:
        _, err = child.communicate(timeout=300)
    finally:
        stop(child)
    assert_one_line_error(child.returncode, err, "demo stopped: train.py failed (exit 2)", prefix="demo stopped")
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[-2].startswith("error: --out ") and "cannot create the folder" in lines[-2], err


def test_ctrl_c_during_demo_lets_the_trainer_snapshot_then_exits_130(tmp_path):
    child = demo(tmp_path / "demo")
    watchdog = threading.Timer(300, stop, (child,))  # a readline below must not wait for the whole demo
    watchdog.start()
    try:
        for line in child.stdout:
            if "iteration" in line:  # train.py's table header: the trainer is in its loop
                break
        os.killpg(child.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the demo and its script
        _, err = child.communicate(timeout=300)
    finally:
        watchdog.cancel()
        stop(child)
    assert child.returncode == 130, err
    assert "Traceback" not in err, err
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip()]
    assert lines[-1] == "interrupted", err
    assert re.search(r"^error: interrupted at iteration \d+; to go on, run the same command with --resume ", lines[-2])
    assert any(name.startswith("snapshot_iter_") for name in os.listdir(tmp_path / "demo" / "pixelcnn"))


@pytest.mark.parametrize("length", [1, 15, 16, 300, 8000])
def test_audio_plot_of_short_or_silent_output_warns_nothing(tmp_path, length):
    from PIL import Image

    from wavenet.plots import plot_audio

    for name, samples in (("silence", np.zeros(length)), ("noise", np.random.default_rng(0).uniform(-1, 1, length))):
        path = str(tmp_path / f"{name}.png")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            plot_audio(samples, 8000, path)
        assert Image.open(path).size[0] > 100
