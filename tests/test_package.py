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


def test_call_kernel_compiles_new_signatures_at_the_kernel_opt_level(monkeypatch):
    """The package's kernels compile at ``config._KERNEL_OPT`` (a shorter cold
    compile); Numba's level is restored afterwards, and a NUMBA_OPT set by the
    user is left alone."""
    import numpy as np
    from numba import njit
    from numba.core import config as numba_config

    from lstmforecast import config

    levels = []

    def make():
        @njit(cache=False)
        def add_one(a):
            return a + 1.0

        compile_ = add_one.compile

        def recording_compile(sig):
            levels.append(int(numba_config.OPT))
            return compile_(sig)

        add_one.compile = recording_compile
        return add_one

    monkeypatch.delenv("NUMBA_OPT", raising=False)
    before = int(numba_config.OPT)
    kernel = make()
    out = config.call_kernel(kernel, np.arange(3.0))
    np.testing.assert_array_equal(out, [1.0, 2.0, 3.0])
    assert levels == [config._KERNEL_OPT]
    assert int(numba_config.OPT) == before
    assert len(kernel.overloads) == 1
    config.call_kernel(kernel, np.arange(3.0))      # compiled once per dtype
    assert levels == [config._KERNEL_OPT]

    monkeypatch.setenv("NUMBA_OPT", "3")
    levels.clear()
    other = make()
    np.testing.assert_array_equal(config.call_kernel(other, np.zeros(2)), [1.0, 1.0])
    assert levels == [before]        # compiled on the call, at Numba's own level
    assert len(other.overloads) == 1


def test_readme_links_resolve():
    """Every relative link in README.md names a file of the repository, and every
    ``#anchor`` a heading of the README (GitHub's lower-case, hyphenated form)."""
    text = (REPO / "README.md").read_text()
    anchors = {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
               for h in re.findall(r"^#+ (.+)$", text, re.M)}
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    relative = [link for link in links if "://" not in link]
    assert relative, "README.md has no relative links to check"
    for link in relative:
        if link.startswith("#"):
            assert link[1:] in anchors, link
        else:
            assert (REPO / link.split("#")[0]).is_file(), link
