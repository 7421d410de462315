"""Every search space in search_spaces/ loads and validates; bad spaces fail with one line."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from hebbnas import HebbnasError
from hebbnas.space import SPACES_DIR, load_space, parse_space

SPACE_FILES = sorted(Path(SPACES_DIR).glob("*.yaml"))


def test_there_are_spaces() -> None:
    assert SPACE_FILES, "search_spaces/ holds no YAML file"


@pytest.mark.parametrize("path", SPACE_FILES, ids=lambda p: p.name)
def test_space_loads_and_samples(path: Path) -> None:
    space = load_space(path)
    assert space.base.macs(space.deploy_input) > 0
    assert load_space(path.stem) == space
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    for section in space.sections.values():
        for name, dist in section.items():
            value = dist.suggest(trial, name)
            if dist.kind == "categorical":
                assert value in dist.choices
            else:
                assert dist.low <= value <= dist.high
            default = dist.default()
            assert default in dist.choices if dist.kind == "categorical" else dist.low <= default <= dist.high


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ([], "must be a YAML mapping"),
        ({"name": "x"}, "missing key 'base'"),
        ({"name": "x", "base": "nope"}, "unknown topology"),
        ({"name": "x", "base": "googlenet", "deploy_input": "1x224x224"}, "channels"),
        ({"name": "x", "base": "googlenet", "deploy_input": "3x16x16"}, "input too small"),
        ({"name": "x", "base": "googlenet", "derive": {"threshold": {"low": 0.9, "high": 0.1}}}, "invalid range"),
        ({"name": "x", "base": "googlenet", "train": {"lr": {"low": 0, "high": 1, "log": True}}}, "log needs"),
        ({"name": "x", "base": "googlenet", "train": {"lr": "fast"}}, "expected a mapping"),
        ({"name": "x", "base": "googlenet", "bogus": 1}, "unknown keys"),
    ],
)
def test_bad_spaces(raw: object, match: str) -> None:
    with pytest.raises(HebbnasError, match=match):
        parse_space(raw)


def test_unknown_space_name() -> None:
    with pytest.raises(HebbnasError, match="unknown search space 'nope'"):
        load_space("nope")


def test_corrupt_space_file(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("name: [unclosed\n")
    with pytest.raises(HebbnasError, match="cannot read search space"):
        load_space(p)


def test_old_keys_are_read_under_their_new_names_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """proxy.width, search.max_epochs and final.width are read as proxy_width and trial_epochs, each old key
    named once on stderr with its new name; the space records the new names (config.yaml, --resume)."""
    from hebbnas.renames import _SAID
    from hebbnas.search import resolve_settings

    _SAID.clear()
    raw = {"name": "x", "base": "googlenet", "proxy": {"width": 0.5}, "search": {"max_epochs": 4},
           "final": {"width": 0.25}}
    space = parse_space(raw, source="old.yaml")
    assert capsys.readouterr().err.splitlines() == [
        "old.yaml: proxy.width is now proxy.proxy_width", "old.yaml: search.max_epochs is now search.trial_epochs",
        "old.yaml: final.width is now final.proxy_width"]
    assert space.proxy == {"proxy_width": 0.5} and space.search == {"trial_epochs": 4}
    assert space.raw["search"] == {"trial_epochs": 4} and space.final == {"proxy_width": 0.25}
    s = resolve_settings(space, "x", {"budget": 1.5e9, "strategy": "paper"})
    assert (s.proxy.proxy_width, s.trial_epochs, s.final["proxy_width"]) == (0.5, 4, 0.25)
    parse_space(raw, source="old.yaml")
    assert capsys.readouterr().err == ""  # once per process and place


def test_shipped_spaces_use_the_current_names() -> None:
    for path in SPACE_FILES:
        text = path.read_text()
        assert "max_epochs:" not in text and "\n  width:" not in text, path.name
