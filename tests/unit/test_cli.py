"""The `xlmr` command: help without torch or fairseq, in well under a second; a user mistake as one line and exit
status 2; `--debug` / XLMR_DEBUG=1 for the traceback; argparse's usage errors as they were."""

import json
import os
import subprocess
import sys
import time

import pytest

from fairseq_xlmr import cli
from fairseq_xlmr.commands import analyze, eval_retrieval, fetch_pretrained

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HELP_SECONDS = 2.0  # measured: ~0.06 s for `xlmr --help`, ~0.2 s for `xlmr binarize --help`; generous for CI


def xlmr_command():
    """The installed console script, else the module."""
    script = os.path.join(os.path.dirname(sys.executable), "xlmr")
    return [script] if os.path.isfile(script) else [sys.executable, "-m", "fairseq_xlmr.cli"]


@pytest.mark.parametrize("argv", [["--help"], ["binarize", "--help"], ["analyze", "cka", "--help"]])
def test_help_is_fast(argv):
    start = time.perf_counter()
    done = subprocess.run(xlmr_command() + argv, capture_output=True, text=True, cwd=REPO, timeout=60)
    seconds = time.perf_counter() - start
    assert done.returncode == 0 and done.stdout.startswith("usage: xlmr"), done.stderr
    assert seconds < HELP_SECONDS, f"xlmr {' '.join(argv)} took {seconds:.2f}s"


def test_no_command_help_imports_torch_or_fairseq():
    code = """
import json, sys
from fairseq_xlmr import cli
heavy = {}
for name in cli.SUBCOMMANDS:
    try:
        cli.main([name, "--help"])
    except SystemExit as done:
        assert done.code == 0, name
    heavy[name] = sorted(m for m in ("torch", "fairseq", "sklearn", "matplotlib.pyplot") if m in sys.modules)
print(json.dumps(heavy))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    heavy = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(heavy) == set(cli.SUBCOMMANDS) and not any(heavy.values()), heavy


def _one_run(tmp_path):
    path = tmp_path / "model.json"
    path.write_text(json.dumps({"task": "x", "seed": 1, "metric": "accuracy", "split": "test",
                                "per_language": {"de": 1.0}, "average": 1.0}))
    return ["spread", str(path), "--baselines", str(path)]


def test_a_user_mistake_is_one_line_and_exit_status_2(tmp_path, capsys):
    assert cli.main(_one_run(tmp_path)) == 2
    captured = capsys.readouterr()
    assert captured.err == "xlmr spread: error: --baselines has 1 file; a spread needs at least two runs.\n"
    # The console script: the same line, status 2, no traceback.
    done = subprocess.run(xlmr_command() + _one_run(tmp_path), capture_output=True, text=True, cwd=REPO,
                          timeout=60, env={**os.environ, "XLMR_DEBUG": ""})
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == "xlmr spread: error: --baselines has 1 file; a spread needs at " \
                                                   "least two runs."


def test_debug_shows_the_traceback(tmp_path, monkeypatch):
    for argv in (["--debug", *_one_run(tmp_path)], [*_one_run(tmp_path), "--debug"]):
        with pytest.raises(ValueError, match="a spread needs at least two runs"):
            cli.main(argv)
    monkeypatch.setenv("XLMR_DEBUG", "1")
    with pytest.raises(ValueError, match="a spread needs at least two runs"):
        cli.main(_one_run(tmp_path))
    done = subprocess.run(xlmr_command() + _one_run(tmp_path), capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.returncode == 1 and "Traceback" in done.stderr and "ValueError: --baselines has 1 file" in done.stderr


def test_argparse_usage_errors_are_unchanged(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["spread"])
    assert done.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("usage: xlmr spread") and err[-1] == (
        "xlmr spread: error: the following arguments are required: model, --baselines")


def test_a_bug_keeps_its_traceback(monkeypatch):
    def broken(args):
        raise KeyError("not a user mistake")

    monkeypatch.setattr(cli.command("report"), "main", broken)
    with pytest.raises(KeyError):
        cli.main(["report", "--results-dir", "."])


def test_command_choices_are_what_the_code_accepts():
    """Commands declare the choices of libraries that import torch (to print their help without it)."""
    from fairseq_xlmr.analysis import align, cka
    from fairseq_xlmr.evaluation import retrieval
    from fairseq_xlmr.interop import pretrained

    assert (analyze.KERNELS, analyze.MAPS) == (cka.KERNELS, align.MAPS)
    assert (eval_retrieval.POOLINGS, eval_retrieval.SCORINGS, eval_retrieval.BACKENDS) == (
        retrieval.POOLINGS, retrieval.SCORINGS, retrieval.BACKENDS)
    assert fetch_pretrained.MODELS == tuple(sorted(pretrained.MODELS))
