"""Package-level promises: cheap import, the command line, the README quick start."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(code, **env):
    full_env = dict(os.environ, PYTHONPATH=str(REPO), **env)
    return subprocess.run([sys.executable, "-c", code], env=full_env,
                          capture_output=True, text=True, timeout=300)


def test_import_compiles_nothing_and_is_fast():
    code = (
        "import time; t = time.perf_counter(); import lstmforecast; "
        "elapsed = time.perf_counter() - t\n"
        "from lstmforecast import _kernels, _training, _optimizers\n"
        "compiled = [f.__name__ for m in (_kernels, _training, _optimizers) "
        "for f in vars(m).values() if getattr(f, 'signatures', None)]\n"
        "print(elapsed, len(compiled))\n"
    )
    out = _run(code)
    assert out.returncode == 0, out.stderr
    elapsed, n_compiled = out.stdout.split()
    assert int(n_compiled) == 0
    # "well under a second" on an idle machine; generous for a shared CI box.
    assert float(elapsed) < 3.0


def test_cli_demo_prints_a_score():
    out = _run("from lstmforecast.cli import main; "
               "raise SystemExit(main(['demo', '--length', '300', '--epochs', '3']))")
    assert out.returncode == 0, out.stderr
    match = re.search(r"test R\^2: LSTM (-?\d+\.\d+)", out.stdout)
    assert match, out.stdout
    assert float(match.group(1)) <= 1.0


@pytest.mark.parametrize("args", [["demo", "--length", "5"], ["demo", "--epochs", "0"],
                                  ["nonsense"], []])
def test_cli_bad_arguments_exit_2(args):
    out = _run(f"from lstmforecast.cli import main; raise SystemExit(main({args!r}))")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].startswith("usage:") or \
        "error" in out.stderr


def test_readme_quick_start_has_exactly_two_commands():
    text = (REPO / "README.md").read_text()
    section = re.search(r"^## Quick start\n(.*?)^## ", text, re.S | re.M).group(1)
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    lines = [line for line in block.splitlines() if line.strip()]
    assert len(lines) == 2
    assert "pip install" in lines[0] and "lstmforecast" in lines[0]
    assert "pytest" in lines[1]
    ci = (REPO / ".ci" / "run").read_text()
    assert lines[1] in ci


def test_readme_first_command_parses_as_a_forecast():
    from lstmforecast.cli import build_parser

    text = (REPO / "README.md").read_text()
    section = re.search(r"^## Quick start\n(.*?)^## ", text, re.S | re.M).group(1)
    first = re.search(r"```bash\n(.*?)\n", section).group(1)
    command = first.split("&&")[-1].split()
    assert command[:2] == ["lstmforecast", "forecast"]
    args = build_parser().parse_args(command[1:])
    assert (args.dataset, args.horizon) == ("airline", 12)


def test_readme_documents_forecasting_datasets_and_accuracy():
    text = (REPO / "README.md").read_text()
    for heading in ("## Forecasting", "## Datasets", "## Forecast accuracy",
                    "## Using the estimators", "## Compilation and the Numba cache",
                    "## Layout"):
        assert re.search(rf"^{heading}$", text, re.M), heading
    datasets = re.search(r"^## Datasets\n(.*?)^## ", text, re.S | re.M).group(1)
    assert "datasets/README.md" in datasets
    accuracy = re.search(r"^## Forecast accuracy\n(.*?)^## ", text,
                         re.S | re.M).group(1)
    assert "python benchmarks/forecast.py" in accuracy
    assert "| dataset | protocol | method |" in accuracy
    for name in ("airline", "sunspots", "mackey_glass", "electricity"):
        assert f"| {name} |" in accuracy
