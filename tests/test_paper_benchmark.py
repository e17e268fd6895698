"""``benchmarks/paper.py``: its rows, trials and reports, on a tiny time budget."""

import csv
import importlib.util
import os
import subprocess
import sys

import pytest

_PATH = os.path.join(os.path.dirname(__file__), os.pardir, "benchmarks", "paper.py")


@pytest.fixture(scope="module")
def paper():
    spec = importlib.util.spec_from_file_location("paper_benchmark", _PATH)
    module = importlib.util.module_from_spec(spec)
    # dataclasses and the worker processes look the module up by name
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def test_quick_rows_and_recipes(paper):
    rows = [(s.exp, s.kwargs.get("T"), s.net.get("output_activation"), s.recipes)
            for s in paper._specs(False)]
    # Exps. 4 and 5 run with the paper's logistic output and with a linear one; the
    # linear rows are a reading of the paper's recipe, not a second modern run
    assert ("4", 100, None, ("paper", "modern")) in rows
    assert ("4", 100, "identity", ("paper",)) in rows
    assert ("5", 100, "identity", ("paper",)) in rows
    assert sorted({r[0] for r in rows}) == ["1", "2c", "3a", "3b", "3c", "4", "5",
                                            "6a", "6b"]
    full = paper._specs(True)
    assert [s.kwargs["T"] for s in full if s.exp == "4"
            and s.net.get("output_activation") == "identity"] == [100, 500, 1000]


def test_a_run_writes_both_tables(tmp_path):
    # (a process of its own, as users run it: main() sets NUMBA_NUM_THREADS for
    # its forked workers, which Numba refuses in a process whose threads run)
    argv = ["--only", "4", "--recipes", "paper", "--seconds", "2", "--jobs", "1",
            "--out", str(tmp_path)]
    proc = subprocess.run([sys.executable, _PATH, *argv], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(tmp_path / "paper_results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["setting"], r["recipe"]) for r in rows] == [
        ("T=100", "paper"), ("T=100, linear output", "paper")]
    for r in rows:
        assert r["weights"] == "93"          # Table 10
        assert r["paper_success_after"] == "74,000"
        assert r["trials"] == "1"
        assert r["successful"] == "0"        # not in 2 s
        assert int(r["max_seen"]) >= 8       # the first call builds the network
    assert rows[1]["network"].endswith("linear out")
    table = (tmp_path / "paper_results.md").read_text()
    assert "`python benchmarks/paper.py --only 4 --recipes paper --seconds 2" in table
    assert table.count("\n| 4 |") == 2
    assert table in proc.stdout
