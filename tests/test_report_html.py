"""`hebbnas report RUN --html`: one self-contained page; the Pareto front; the heatmap title fits; Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from hebbnas import HebbnasError
from hebbnas.cli import main
from hebbnas.derive import fit
from hebbnas.report import heatmap_figure, pareto_front, render_html, write_html_report, write_report

from tests.builders import BUDGET, make_derivation

CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if os.path.exists(p)), None)


def make_run(root: Path, n_trials: int = 9) -> Path:
    """A run folder as the search writes it (config, trials.csv, best/, report/round-1) with fake trials."""
    run = root / "paper-1.2e9-demo"
    run.mkdir(parents=True)
    cfg = {"command": "hebbnas search --budget 1.2e9", "created": "2026-11-30T12:00:00", "budget": BUDGET,
           "strategy": "hebbian", "seed": 0, "deploy_input": [3, 224, 224], "dataset": "digits", "resolution": 32,
           "settings": {"trials": n_trials, "trial_epochs": 3, "rounds": 1}, "versions": {"torch": "2.13.0"}}
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    rng = np.random.default_rng(0)
    lines = ["trial_id,round,strategy,status,optuna_state,epochs,val_acc,best_val_acc,macs,params,train.lr"]
    for i in range(n_trials):
        status = "completed" if i % 3 else "stopped"
        acc = 0.6 + 0.3 * rng.random()
        lines.append(f"t{i:03d},1,hebbian,{status},{'COMPLETE' if i % 3 else 'PRUNED'},{3 if i % 3 else 1},{acc:.4f},"
                     f"{acc:.4f},{int(8e8 + 4e8 * rng.random())},{int(3e6 + 3e6 * rng.random())},{1e-3 * (i + 1):.4g}")
    lines.append("t_err,1,hebbian,error,FAIL,0,,,,,0.5")
    (run / "trials.csv").write_text("\n".join(lines) + "\n")
    (run / "best").mkdir()
    (run / "best" / "metrics.json").write_text(json.dumps({"trial_id": "t004", "round": 1, "val_acc": 0.9,
                                                           "test_acc": 0.88, "macs": 1_199_000_000, "params": 5_000_000}))
    derivation, corrs = make_derivation(np.random.default_rng(0))
    fitted = fit(derivation.topology, BUDGET, name="googlenet-hebbian-fit")
    write_report(run / "report" / "round-1", derivation, fitted, corrs, budget=BUDGET, title="Round 1")
    return run


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("html"))


def test_pareto_front() -> None:
    costs = [3.0, 1.0, 2.0, 2.0, 4.0, float("nan"), 0.5]
    accs = [0.9, 0.5, 0.7, 0.6, 0.85, 0.99, float("nan")]
    assert pareto_front(costs, accs) == [1, 2, 0]  # by cost; 3 (same cost, worse) and 4 (dearer, worse) dominated
    assert pareto_front([], []) == []
    assert pareto_front([1.0, 1.0], [0.5, 0.5]) == [0]  # ties: one point


def test_html_page_is_self_contained(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(run), "--html"]) == 0
    assert "wrote" in capsys.readouterr().out
    page = (run / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    for text in ("Settings", "hebbnas search --budget 1.2e9", "Trials (10)", "Best model", "Pareto front",
                 "Round 1: cluster-to-branch report", "derived widths beside the paper", "inception4c"):
        assert text in page, text
    imgs = re.findall(r"<img [^>]*src='([^']*)'", page)
    assert len(imgs) == 2 + 1 + 3  # accuracy vs MACs and vs params, widths, three heatmaps
    assert all(src.startswith("data:image/png;base64,") for src in imgs)
    assert not re.search(r"(src|href)=['\"]?(https?:|file:|/)", page) and "<script" not in page  # nothing external
    assert page.count("class='best'") == 1  # the best trial's row
    assert len(re.findall(r"<table", page)) >= 4


def test_html_bad_paths(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(HebbnasError, match="not a folder"):
        render_html(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty"), "--html"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not a run or probe folder" in err
    assert main(["report", str(tmp_path / "empty"), "-o", str(tmp_path / "x.html")]) == 2
    assert "--out goes with --html" in capsys.readouterr().err
    assert not (tmp_path / "empty" / "report.html").exists()


def test_html_of_an_interrupted_run_and_a_custom_path(run: Path, tmp_path: Path) -> None:
    partial = tmp_path / "partial"
    shutil.copytree(run, partial)
    shutil.rmtree(partial / "best")
    shutil.rmtree(partial / "report")
    out = write_html_report(partial, tmp_path / "page.html")
    page = out.read_text()
    assert out == tmp_path / "page.html" and "Trials (10)" in page and "Best model" not in page
    assert "cluster-to-branch" not in page


def test_heatmap_title_is_inside_the_figure() -> None:
    derivation, corrs = make_derivation(np.random.default_rng(1))
    from hebbnas.derive import Policy

    md = next(m for m in derivation.modules if m.dead)  # the longest title: dead channels in grey
    fig = heatmap_figure(md, corrs[md.name], Policy(threshold=0.55, method="complete", partial=True))
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    title = fig.axes[0].title
    box = title.get_window_extent(canvas.get_renderer())
    assert "dead in grey" in title.get_text() and "partial |r|" in title.get_text()
    assert box.x0 >= 0 and box.x1 <= fig.bbox.width and box.y1 <= fig.bbox.height


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (Debian: apt-get install chromium)")
def test_page_renders_in_headless_chromium(run: Path, tmp_path: Path) -> None:
    from PIL import Image

    page = write_html_report(run)
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
             f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0"]
    shot = tmp_path / "shot.png"
    res = subprocess.run([*flags, "--window-size=1280,4000", f"--screenshot={shot}", page.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert shot.is_file(), res.stderr[-2000:]
    img = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    non_white = (img.sum(axis=2) < 720).mean()
    assert img.shape[0] >= 4000 and non_white > 0.05, non_white  # text, tables and plots, not a blank page
    colourful = ((img.max(axis=2) - img.min(axis=2)) > 60).mean()
    assert colourful > 0.01, colourful  # the embedded plots decoded (magma heatmaps, coloured markers)
    dom = subprocess.run([*flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert "<table" in dom.stdout and "Pareto front" in dom.stdout and dom.stdout.count("<img") == 6
    log = res.stderr + dom.stderr
    errors = [ln for ln in log.splitlines() if "CONSOLE" in ln or "Uncaught" in ln or "Failed to load" in ln
              or "net::ERR" in ln]
    assert not errors, errors
