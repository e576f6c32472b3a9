"""``cyclegan compare``: runs side by side, picked by best/'s rule (tiers, then score, ties within noise)."""

from __future__ import annotations

import json

import pytest

from cyclegan.cli import main
from cyclegan.config import Config, preset, with_family
from cyclegan.errors import ConfigError, CycleGANError
from cyclegan.evaluate.compare import compare_runs, comparison_lines


def held_out(swd: float, change: float = 0.15, sd: float = 2.0, baseline: float = 300.0) -> dict[str, float]:
    """One evaluation as best/meta.json keeps it: both directions alike."""
    flat = {}
    for d in ("AtoB", "BtoA"):
        flat |= {f"val_swd_{d}": swd, f"val_swd_identity_{d}": baseline, f"val_swd_sd_{d}": sd,
                 f"val_change_{d}": change, f"val_domain_gap_{d}": 2.0, f"val_cycle_l1_{d}": 0.05}
    return flat | {"val_swd": swd}


def make_run(root, name, flat, family="cyclegan", crop=64, best=True) -> str:
    run = root / name
    (run / "best").mkdir(parents=True)
    config = with_family(preset("paper"), family)
    config.train.test_a, config.train.crop_size = str(root / "testA"), crop
    (run / "config.json").write_text(config.to_json())
    if best:
        (run / "best" / "meta.json").write_text(json.dumps({"epoch": 3, "metric": "val_swd", "value": flat["val_swd"],
                                                            "metrics": flat}))
    return str(run)


def test_the_lower_score_wins_and_the_table_shows_every_run(tmp_path):
    a = make_run(tmp_path, "cyclegan_run", held_out(200.0))
    b = make_run(tmp_path, "cut_run", held_out(150.0), family="cut")
    comparison = compare_runs([a, b])
    assert comparison.pick.name == "cut_run" and "the lowest mean SWD" in comparison.reason
    lines = comparison_lines(comparison)
    assert lines[1].split() == ["model", "cyclegan", "/", "paper", "cut", "/", "paper"]
    assert lines[-1].startswith("Use cut_run:")


def test_closer_than_the_noise_is_called_a_tie(tmp_path):
    a = make_run(tmp_path, "a", held_out(200.0, sd=10.0))
    b = make_run(tmp_path, "b", held_out(195.0, sd=10.0))
    comparison = compare_runs([a, b])
    assert comparison.pick.name == "b" and "a tie" in comparison.reason


def test_a_run_that_translates_nothing_loses_to_one_that_is_merely_worse_than_its_input(tmp_path):
    idle = make_run(tmp_path, "idle", held_out(290.0, change=0.01))  # lowest score, but returns its input
    worse = make_run(tmp_path, "worse", held_out(320.0))  # above the input's 300
    good = make_run(tmp_path, "good", held_out(250.0))
    assert compare_runs([idle, worse]).pick.name == "worse"
    comparison = compare_runs([idle, worse, good])
    assert comparison.pick.name == "good" and "translates, no worse than its input" in comparison.reason
    assert "idle" in comparison_lines(comparison)[-3]  # the state row


def test_a_one_way_run_is_compared_on_the_direction_every_run_trained(tmp_path):
    """A one-way CUT run has A->B scores alone: the two-way runs are judged on A->B too, not on a mean
    over both that includes a direction the other never trained."""
    two_way = held_out(200.0)
    two_way |= {"val_swd_BtoA": 60.0}  # B->A far better: a mean over both would pick this run
    one_way = {k: v for k, v in held_out(150.0).items() if not k.endswith("_BtoA")}
    a = make_run(tmp_path, "both_ways", two_way)
    b = make_run(tmp_path, "one_way", one_way, family="cut")
    comparison = compare_runs([a, b])
    assert comparison.pick.name == "one_way" and "AtoB only" in comparison.reason
    assert comparison.runs[0].value == 200.0
    assert any(line.startswith("SWD BtoA") and line.split()[-1] == "-" for line in comparison_lines(comparison))
    assert compare_runs([a, a]).runs[0].value == 130.0  # two two-way runs: both directions, as before


def test_runs_on_other_data_or_sizes_are_refused_and_runs_without_scores_named(tmp_path):
    a = make_run(tmp_path, "a", held_out(200.0))
    other = make_run(tmp_path, "other", held_out(150.0), crop=128)
    with pytest.raises(ConfigError, match="different held-out images or at different sizes"):
        compare_runs([a, other])
    fresh = make_run(tmp_path, "fresh", held_out(1.0), best=False)  # no best/, no metrics.csv yet
    comparison = compare_runs([a, fresh])
    assert comparison.pick.name == "a" and "the only run with held-out scores" in comparison.reason
    with pytest.raises(ConfigError, match="two or more"):
        compare_runs([a])
    with pytest.raises(CycleGANError, match="does not exist"):
        compare_runs([a, str(tmp_path / "nothing")])


def test_the_command_prints_the_pick_and_json(tmp_path, capsys):
    a = make_run(tmp_path, "a", held_out(200.0))
    b = make_run(tmp_path, "b", held_out(100.0))
    assert main(["compare", a, b]) == 0
    assert "Use b: the lowest mean SWD of both directions: 100, against a's 200" in capsys.readouterr().out
    assert main(["compare", "--json", a, b]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["pick"] == "b" and [r["tier"] for r in data["runs"]] == [0, 0]
    assert main(["compare", a]) == 1 and "two or more" in capsys.readouterr().err


def test_config_round_trip_of_the_helpers_config(tmp_path):
    """The helper writes real config.json files: they load as the configs they came from."""
    run = make_run(tmp_path, "r", held_out(1.0), family="fastcut")
    assert Config.from_json((tmp_path / "r" / "config.json").read_text()).model.family == "fastcut" and run
