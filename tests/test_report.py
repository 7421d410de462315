"""The cluster-to-branch report: tables, Markdown, written files, plots, and reading a report back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hebbnas import HebbnasError, get_topology
from hebbnas.derive import Derivation, fit
from hebbnas.report.files import read_report, report_dict, write_report
from hebbnas.report.markdown import render_markdown, sci
from hebbnas.report.plots import cluster_order
from hebbnas.report.tables import cluster_table, compact_members, module_table, reduction_savings
from hebbnas.topology import PAPER_COLUMNS, PAPER_WIDTHS, Topology
from tests.builders import BUDGET, SPECS, make_derivation

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
@pytest.fixture(scope="module")
def case() -> tuple[Derivation, Topology, dict[str, np.ndarray]]:
    derivation, corrs = make_derivation(np.random.default_rng(0))
    fitted = fit(derivation.topology, BUDGET, name="googlenet-hebbian-fit")
    return derivation, fitted, corrs


@pytest.fixture(scope="module")
def written(case: tuple[Derivation, Topology, dict[str, np.ndarray]],
            tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    derivation, fitted, corrs = case
    out = tmp_path_factory.mktemp("run") / "report" / "round-2"
    return out, write_report(out, derivation, fitted, corrs, budget=BUDGET, title="Test report")


def test_compact_members() -> None:
    assert compact_members([45, 3, 17, 40, 41, 42, 43, 44]) == "3,17,40-45"
    assert compact_members([1, 2]) == "1,2" and compact_members([]) == ""


def test_module_table(case: tuple[Derivation, Topology, dict[str, np.ndarray]]) -> None:
    derivation, fitted, _ = case
    mt = module_table(derivation, fitted)
    assert list(mt["module"]) == [s[0] for s in SPECS]
    for col in ("in_channels", "map_size", "clusters", "dead", "n_scale1", "n_scale3", "n_scale5",
                "scale_measured", "macs", "params", "paper macs", "paper params", "3x3red saves", "5x5red saves"):
        assert col in mt.columns, col
    costs = fitted.module_costs()
    paper_costs = get_topology("googlenet").module_costs()
    for row, md in zip(mt.to_dict(orient="records"), derivation.modules):
        assert tuple(row[c] for c in PAPER_COLUMNS) == fitted.module(md.name).widths
        assert tuple(row[f"paper {c}"] for c in PAPER_COLUMNS) == PAPER_WIDTHS[md.name]
        assert row["n_scale1"] + row["n_scale3"] + row["n_scale5"] == row["live_clusters"]
        assert row["live_clusters"] + row["dead"] == row["clusters"] == md.num_clusters
        assert (row["macs"], row["params"]) == costs[md.name]
        assert (row["paper macs"], row["paper params"]) == paper_costs[md.name]
    assert list(mt["scale_measured"]) == [s[3] for s in SPECS]


def test_reduction_savings_match_the_worked_example() -> None:
    # inception4a's 5x5 branch: A=480 -> reduction C=16 -> B=48 (the paper reader's formula)
    s = reduction_savings(get_topology("googlenet"))["inception4a"]
    a, c, b = 480, 16, 48
    assert s["5x5 saves"] == pytest.approx(25 * a * b / (a * c + 25 * c * b), rel=1e-6)
    no_red = get_topology("googlenet").with_widths({"inception3a": (64, 0, 128, 16, 32, 32)})
    s = reduction_savings(no_red)["inception3a"]
    assert s["3x3 saves"] == 1.0 and s["3x3"] == s["3x3 no red"]


def test_removed_branch_is_missing_not_zero(case: tuple[Derivation, Topology, dict[str, np.ndarray]]) -> None:
    derivation, fitted, _ = case
    no3x3 = fitted.with_widths({"inception4c": (64, 0, 0, 16, 32, 32)})
    mt = module_table(derivation, no3x3)
    row = mt.set_index("module").loc["inception4c"]
    assert pd.isna(row["3x3 macs"]) and pd.isna(row["3x3red saves"]) and row["5x5 macs"] > 0
    assert str(mt["5x5 macs"].dtype) == "Int64"
    rec = report_dict(derivation, no3x3)["modules"][1]
    assert rec["3x3 macs"] is None and rec["3x3red saves"] is None and isinstance(rec["5x5 macs"], int)


def test_sci() -> None:
    assert [sci(v) for v in (1.5e9, 1_582_000_000, 8e7, 123)] == ["1.5e9", "1.582e9", "8e7", "123"]


def test_cluster_table(case: tuple[Derivation, Topology, dict[str, np.ndarray]]) -> None:
    derivation, _, _ = case
    ct = cluster_table(derivation)
    assert list(ct.columns) == ["module", "cluster", "size", "members", "cohesion", "decay1", "decay2", "scale",
                                "branch", "dead"]
    assert len(ct) == sum(s[1] + len(s[4]) for s in SPECS)
    for md in derivation.modules:
        sizes = ct.loc[ct["module"] == md.name, "size"]
        assert sizes.sum() == md.in_channels
    assert list(ct.loc[ct["dead"], "members"]) == ["5", "6"]
    assert ct.loc[ct["module"] == "inception5b", "decay1"].isna().all()


def test_cluster_order_is_a_permutation(case: tuple[Derivation, Topology, dict[str, np.ndarray]]) -> None:
    md = case[0].module("inception5b")
    order, spans = cluster_order(md)
    assert sorted(order.tolist()) == list(range(md.in_channels))
    assert list(order[-2:]) == [5, 6]  # dead clusters last
    assert spans[-2:] == [(md.in_channels - 2, md.in_channels - 1), (md.in_channels - 1, md.in_channels)]


def test_markdown(case: tuple[Derivation, Topology, dict[str, np.ndarray]]) -> None:
    derivation, fitted, _ = case
    text = render_markdown(derivation, fitted, budget=BUDGET, title="Test report")
    assert text.startswith("# Test report")
    for name, *_ in SPECS:
        assert text.count(name) >= 4, name
    assert "spatial scale not measurable at 2x2: branch split of inception5b kept" in text
    assert "not measurable at 2x2: spatial scale" not in text  # the note is not repeated
    assert "threshold=0.5" in text and "budget: 1.2e9 MACs" in text
    assert "smaller clusters" in text  # inception4c has 40 clusters, 12 shown
    assert f"{fitted.macs():,}" in text
    assert max(len(line) for line in text.splitlines()) < 200


def test_write_report_files(written: tuple[Path, dict[str, Path]],
                            case: tuple[Derivation, Topology, dict[str, np.ndarray]]) -> None:
    out, files = written
    expected = {"report.md", "modules.csv", "clusters.csv", "report.json", "plots/widths.png"}
    expected |= {f"plots/{k}_{n}.png" for n, *_ in SPECS for k in ("heatmap", "dendrogram")}
    assert set(files) == expected
    for rel, p in files.items():
        assert p == out / rel and p.is_file() and p.stat().st_size > 0
        if rel.endswith(".png"):
            assert p.read_bytes()[:8] == PNG_SIGNATURE
    assert len(pd.read_csv(out / "modules.csv")) == len(SPECS)
    assert pd.read_csv(out / "clusters.csv")["size"].sum() == sum(md.in_channels for md in case[0].modules)


def test_report_json(written: tuple[Path, dict[str, Path]]) -> None:
    out, _ = written
    text = (out / "report.json").read_text()
    obj = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert set(obj) >= {"policy", "totals", "modules", "clusters"}
    assert obj["policy"]["threshold"] == 0.5
    assert obj["totals"]["fitted"]["macs"] <= BUDGET
    assert obj["totals"]["paper_scaled"]["macs"] <= BUDGET < obj["totals"]["paper"]["macs"]
    assert obj["modules"][2]["dead_channels"] == [5, 6]
    assert all(isinstance(i, int) for c in obj["clusters"] for i in c["members"])
    assert any(c["decay1"] is None for c in obj["clusters"])


def test_read_report_round_trip(written: tuple[Path, dict[str, Path]], tmp_path: Path) -> None:
    out, _ = written
    text = (out / "report.md").read_text()
    assert read_report(out) == text
    run = out.parent.parent
    (out.parent / "round-10").mkdir()  # a round without a report is skipped
    (out.parent / "round-1").mkdir()
    (out.parent / "round-1" / "report.md").write_text("# old\n")
    shown = read_report(run)
    assert shown.endswith(text) and "round 2, the latest of 2 rounds" in shown
    assert read_report(out.parent) == shown
    with pytest.raises(HebbnasError, match="no cluster-to-branch report in"):
        read_report(tmp_path)
    with pytest.raises(HebbnasError, match="no cluster-to-branch report in"):
        read_report(tmp_path / "missing")


def test_write_report_checks_correlation_shape(case: tuple[Derivation, Topology, dict[str, np.ndarray]],
                                               tmp_path: Path) -> None:
    derivation, fitted, _ = case
    with pytest.raises(HebbnasError, match="inception3a: correlation matrix"):
        write_report(tmp_path, derivation, fitted, {"inception3a": np.eye(3)})
    files = write_report(tmp_path / "noplots", derivation, fitted, None, plots=False)
    assert set(files) == {"report.md", "modules.csv", "clusters.csv", "report.json"}
