"""End to end: `hebbnas probe` takes its proxy from the space (two rounds: tests/test_width_proxy.py).

Each test named after a defect fails on the code before its fix.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hebbnas.cli import main

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------------------------------
# end to end: hebbnas probe (two rounds: tests/test_width_proxy.py)


@pytest.mark.slow
def test_probe_command_end_to_end_takes_the_space_proxy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Defect: `hebbnas probe` read `proxy.probe_scale` (a key spaces reject) and ignored the space's proxy."""
    import yaml

    from hebbnas.probe import load_probe
    from hebbnas.space import SPACES_DIR
    from hebbnas.topology import Topology

    raw = yaml.safe_load((SPACES_DIR / "googlenet.yaml").read_text())
    raw["proxy"].update(train_subset=200, resolution=36, probe_resolution=48, seed_epochs=1, probe_images=40)
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(raw))
    out = tmp_path / "probe"
    assert main(["probe", "--budget", "3e8", "--space", str(space), "--out", str(out), "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    info = json.loads((out / "probe.json").read_text())
    assert (info["resolution"], info["probe_resolution"], info["probe_images"], info["seed_epochs"]) == (36, 48, 40, 1)
    seed = Topology.from_json((out / "seed_topology.json").read_text())
    assert seed.num_classes == 10  # the data set's head, as the search's seed
    fitted = Topology.from_json((out / "topology.json").read_text())
    assert fitted.macs((3, 224, 224)) <= 3e8 and info["macs"] == fitted.macs((3, 224, 224))
    probe = load_probe(out / "probe.npz")
    assert set(probe.modules) == set(seed.module_names)
    assert (out / "report" / "report.md").is_file() and "cluster-to-branch" in printed
