"""The search-quality benchmark's bookkeeping: feasible counts, paired differences, verdicts."""

from __future__ import annotations

import json
import math

import pytest

from tests.conftest import tiny_task


@pytest.fixture(scope="module")
def sq():
    from bench import search_quality

    return search_quality


def _cell(seed: int, tests: dict[str, float], budget: float = 0.5) -> dict:
    return {
        "model": "fashion-cnn",
        "scheme": "balanced",
        "hardware": "accel-kang-16",
        "budget": budget,
        "seed": seed,
        "feasible_policies": 1234,
        "feasible_count": "about",
        "dense_holdout": 0.95,
        "methods": {
            m: {"test": t, "holdout": t - 0.01, "cost_ratio": 0.5, "episodes": 10, "seconds": 1.0}
            for m, t in tests.items()
        },
    }


def test_feasible_count_is_exact_when_enumerable_and_bounded_otherwise(sq, monkeypatch) -> None:
    import itertools

    task = tiny_task()
    sizes = [len(d.levels) for d in task.decisions]
    exact = sum(
        task.cost_ratio(c) <= 0.55 + 1e-9 for c in itertools.product(*(range(n) for n in sizes))
    )
    assert sq.feasible_policies(task, 0.55) == (exact, "exact")
    # Separable costs: a lower bound from costs rounded up, close to the exact count.
    bound, how = sq.feasible_policies(task, 0.55, exact_limit=1)
    assert how == "at least" and 0.97 * exact <= bound <= exact
    # Coupled decisions (tables not exact): an estimate from random policies.
    monkeypatch.setattr(task.ledger, "coupled", True)
    estimate, how = sq.feasible_policies(task, 0.55, exact_limit=1, samples=4000)
    assert how == "about" and abs(estimate - exact) <= 0.1 * math.prod(sizes)


def test_paired_difference_against_the_best_baseline(sq) -> None:
    base = {"uniform": 0.80, "random": 0.85, "greedy": 0.86, "tpe": 0.87, "cmaes": 0.84}
    group = [
        _cell(0, {**base, "ddpg": 0.88}),
        _cell(1, {**base, "tpe": 0.89, "ddpg": 0.88}),
        _cell(2, {**base, "ddpg": 0.875}),
    ]
    best, diff, se = sq.paired_difference(group, "ddpg")
    assert best == "tpe"  # mean 0.8767, the best baseline
    diffs = [1.0, -1.0, 0.5]  # points
    assert diff == pytest.approx(sum(diffs) / 3)
    mean = sum(diffs) / 3
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 2)
    assert se == pytest.approx(sd / math.sqrt(3))
    ((line, ok),) = sq._verdicts(group, "ddpg")
    assert ok  # mean 0.8783 >= tpe's 0.8767 and > uniform
    assert "best baseline (tpe) +0.17" in line and "~1,234 feasible policies" in line
    assert "uniform loses 16.00 pts of holdout" in line


def test_report_counts_a_loss_against_any_baseline(sq) -> None:
    base = {"uniform": 0.80, "random": 0.85, "greedy": 0.86, "tpe": 0.87, "cmaes": 0.90}
    cells = [_cell(s, {**base, "ddpg": 0.88}) for s in range(2)]
    text = sq.report(cells, [], [*sq.BASELINES, "ddpg"])
    assert "ddpg on the fashion track" in text and "and > uniform in 0/1" in text
    assert "best baseline (cmaes) -2.00" in text


def test_league_ranks_every_method_and_gives_the_chance_count(sq) -> None:
    methods = [*sq.BASELINES, "ddpg"]
    base = {"uniform": 0.80, "random": 0.85, "greedy": 0.86, "tpe": 0.87, "cmaes": 0.84}
    # ddpg best in the settings at budgets 0.5 and 0.6, cmaes best at 0.7.
    cells = [_cell(s, {**base, "ddpg": 0.88}, b) for s in range(2) for b in (0.5, 0.6)]
    cells += [_cell(s, {**base, "cmaes": 0.90, "ddpg": 0.88}, 0.7) for s in range(2)]
    text = sq.league(cells, methods, "ddpg")
    assert "league over 3 settings" in text
    assert "ddpg     >= every other method in  2/3" in text
    assert "cmaes    >= every other method in  1/3" in text
    assert "tpe      >= every other method in  0/3" in text
    # vs cmaes: +4, +4, -2 points -> mean +2.00; se = sd / sqrt(3) = sqrt(12) / sqrt(3) = 2
    assert "ddpg - cmaes    +2.00 +- 2.00 (se over settings); settings won 2, tied 0" in text
    # Five searches with distinct values in each seed: by chance the ddpg label tops them in
    # a setting when it tops both seeds' mean; it is observed 2/3 times.
    assert "observed 2/3" in text
    chance = float(text.split("> uniform in ")[1].split("/")[0])
    assert 0.3 < chance < 1.5
    assert "distance to a majority (2/3): ddpg +0.00 points" in text  # it already has 2/3
    behind = [
        _cell(s, {**base, "cmaes": 0.90, "ddpg": 0.88}, b) for s in range(2) for b in (0.5, 0.6)
    ]
    text = sq.league(behind + cells[-2:], methods, "ddpg")
    assert "distance to a majority (2/3): ddpg +2.00 points" in text  # 2 points behind cmaes
    # One setting (or no agent) is too few to rank anything.
    assert sq.league([c for c in cells if c["budget"] == 0.5], methods, "ddpg") == ""
    assert sq.league(cells, sq.BASELINES, "ddpg") == ""


def test_league_chance_count_is_one_in_five_for_exchangeable_searches(sq) -> None:
    import numpy as np

    rng = np.random.default_rng(1)
    names = ["random", "greedy", "tpe", "cmaes", "ddpg"]
    cells = [
        _cell(
            0, {"uniform": 0.5, **dict(zip(names, 0.8 + 0.01 * rng.permutation(5), strict=True))}, b
        )
        for b in np.linspace(0.1, 0.9, 10)
    ]
    text = sq.league(cells, [*sq.BASELINES, "ddpg"], "ddpg", draws=2000)
    chance = float(text.split("> uniform in ")[1].split("/")[0])
    assert chance == pytest.approx(10 / 5, abs=0.15)


def test_a_cells_search_proxy_overrides_the_models(sq, capsys):
    assert sq.search_proxy("fashion-cnn") == sq.DEFAULT_SEARCH_PROXY
    assert sq.search_proxy("fashion-cnn", {"search_proxy": ["holdout-energy", {}]}) == (
        "holdout-energy",
        {},
    )
    # A scheme with its own search proxy in the product gets it here too, unless --proxy.
    channel = {"model": "resnet20-fashion", "scheme": "channel"}
    assert sq.search_proxy("resnet20-fashion", channel) == (
        "finetune",
        {"steps": 5, "batch_size": 32},
    )
    crossbar = {**channel, "scheme": "crossbar"}
    assert sq.search_proxy("resnet20-fashion", crossbar) == sq.search_proxy("resnet20-fashion")
    assert sq.search_proxy("resnet20-fashion", {**channel, "search_proxy": ["holdout", {}]}) == (
        "holdout",
        {},
    )
    with pytest.raises(SystemExit):
        sq.main(["--proxy", "nonsense", "--quick"])
    assert "--proxy 'nonsense'; valid: holdout" in capsys.readouterr().err


def test_against_pairs_two_runs_on_their_shared_seeds(sq):
    a = [
        {**_cell(0, {"greedy": 0.90, "ddpg": 0.91}), "proxy": ["holdout", {}]},
        {**_cell(1, {"greedy": 0.92, "ddpg": 0.91}), "proxy": ["holdout", {}]},
    ]
    b = [{**_cell(0, {"greedy": 0.93, "ddpg": 0.92}), "proxy": ["holdout-energy", {}]}]
    text = sq.against(a, b, ["greedy", "ddpg"], "ddpg")
    assert "holdout         ddpg >= every baseline in 1/1" in text
    assert "holdout-energy  ddpg >= every baseline in 0/1" in text
    assert "mean test: greedy 90.00, ddpg 91.00" in text  # seed 1 is not shared: left out
    # Two runs with the same proxy (e.g. a rerun) are still counted apart.
    text = sq.against(a, [{**b[0], "proxy": ["holdout", {}]}], ["greedy", "ddpg"], "ddpg")
    assert "holdout #1      ddpg >= every baseline in 1/1" in text
    assert "holdout #2      ddpg >= every baseline in 0/1" in text


def test_report_reads_the_cells_of_several_files_together(sq, tmp_path, capsys):
    import json

    base = {"uniform": 0.80, "random": 0.85, "greedy": 0.86, "tpe": 0.87, "cmaes": 0.84}
    part_a = {"cells": [_cell(0, {**base, "ddpg": 0.90})]}
    resnet = {**_cell(0, {**base, "ddpg": 0.86}), "model": "resnet20-fashion"}
    part_b = {"cells": [resnet], "awareness": []}
    files = [tmp_path / "a.json", tmp_path / "b.json"]
    for path, doc in zip(files, (part_a, part_b), strict=True):
        path.write_text(json.dumps(doc))
    assert sq.main(["--report", *map(str, files)]) == 0
    out = capsys.readouterr().out
    # Both parts are settings of the one Fashion-MNIST track: 1 of the 2 is a win.
    assert "ddpg on the fashion track" in out and "> uniform in 1/2" in out
    with pytest.raises(SystemExit):
        sq.main(["--report", str(files[0]), str(tmp_path / "missing.json")])
    assert "no such file" in capsys.readouterr().err


def test_a_later_files_cell_replaces_the_same_setting_and_seed(sq, tmp_path, capsys):
    import json

    base = {"uniform": 0.80, "random": 0.85, "greedy": 0.86, "tpe": 0.87, "cmaes": 0.84}
    main_run = {"cells": [_cell(0, {**base, "ddpg": 0.83}), _cell(1, {**base, "ddpg": 0.83})]}
    rerun = {"cells": [_cell(1, {**base, "ddpg": 0.90})]}  # seed 1 again, another proxy
    files = [tmp_path / "main.json", tmp_path / "rerun.json"]
    for path, doc in zip(files, (main_run, rerun), strict=True):
        path.write_text(json.dumps(doc))
    doc, notes = sq.combine([(f.name, json.loads(f.read_text())) for f in files])
    assert sorted(c["seed"] for c in doc["cells"]) == [0, 1]
    assert {c["seed"]: c["methods"]["ddpg"]["test"] for c in doc["cells"]} == {0: 0.83, 1: 0.90}
    assert notes == ["1 cells of main.json replaced by rerun.json's"]
    assert sq.main(["--report", *map(str, files)]) == 0
    out = capsys.readouterr().out
    assert f"1 cells of {files[0]} replaced by {files[1]}'s" in out
    # One setting of two seeds (not three): ddpg's mean 86.50 is below tpe's 87.00.
    assert "> uniform in 0/1" in out


def test_proxy_params_are_checked_before_any_cell_runs(sq, capsys):
    with pytest.raises(SystemExit):
        sq.main(["--proxy", "finetune", "--proxy-param", "stepz=5", "--quick"])
    err = capsys.readouterr().err
    assert "stepz" in err and "steps" in err  # names the bad key and the valid ones
    with pytest.raises(SystemExit):
        sq.main(["--proxy-param", "steps=5", "--quick"])
    assert "needs --proxy" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        sq.main(["--proxy", "finetune", "--proxy-param", "steps", "--quick"])
    assert "KEY=VALUE" in capsys.readouterr().err


def test_pick_shortlist_reports_each_methods_shortlist_pick(sq, capsys, tmp_path):
    import json

    base = {"uniform": 0.80, "random": 0.85, "greedy": 0.86, "tpe": 0.87, "cmaes": 0.90}
    cell = _cell(0, {**base, "ddpg": 0.88})
    for m, figs in cell["methods"].items():
        # Each shortlist pick is 2 points better on test, ddpg's 5.
        gain = 0.05 if m == "ddpg" else 0.02
        figs["shortlisted"] = {
            "holdout": figs["holdout"] - 0.001,
            "test": figs["test"] + gain,
            "tests": [figs["test"] + gain],
            "cost_ratio": 0.49,
        }
    with_picks = sq.picked([cell], "shortlist")[0]["methods"]
    assert with_picks["ddpg"]["test"] == pytest.approx(0.93)
    assert with_picks["ddpg"]["episodes"] == 10  # the search's own figures stay
    assert sq.picked([cell], "search") == [cell]
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"cells": [cell]}))
    assert sq.main(["--report", str(path), "--pick", "shortlist"]) == 0
    assert "> uniform in 1/1" in capsys.readouterr().out
    assert sq.main(["--report", str(path)]) == 0
    assert "> uniform in 0/1" in capsys.readouterr().out
    del cell["methods"]["tpe"]["shortlisted"]
    path.write_text(json.dumps({"cells": [cell]}))
    with pytest.raises(SystemExit):
        sq.main(["--report", str(path), "--pick", "shortlist"])
    assert "tpe has no shortlist pick" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--shortlist", "-1"], "shortlist must be an integer >= 0"),
        (["--shortlist", "3", "--shortlist-proxy", "finetun"], "Did you mean 'finetune'"),
        (["--shortlist", "3", "--shortlist-param", "stepz=1"], "unknown parameter(s) stepz"),
    ],
)
def test_shortlist_settings_are_checked_before_any_cell_runs(sq, capsys, args, message):
    with pytest.raises(SystemExit):
        sq.main([*args, "--quick"])
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_a_cell_run_with_a_shortlist_fine_tunes_its_pick(sq):
    cell = {
        "model": "digits-cnn",
        "scheme": "balanced",
        "hardware": "accel-kang-16",
        "budget": 0.5,
        "metric": "latency",
        "seed": 0,
        "episodes": 8,
        "finetune": 2,
        "finetune_seeds": 1,
        "methods": ["uniform", "random"],
        "shortlist": [3, "finetune", {"steps": 2}],
    }
    out = sq.run_cell(cell)
    uniform, random = out["methods"]["uniform"], out["methods"]["random"]
    # One uniform policy: its shortlist is itself.
    assert uniform["shortlisted"]["choice"] == uniform["choice"]
    assert uniform["shortlisted"]["test"] == uniform["test"]
    short = random["shortlisted"]
    assert short["size"] == 3 and 0 <= short["search_rank"] < 3
    assert short["cost_ratio"] <= 0.5 + 1e-9 and short["holdout"] <= random["holdout"]
    if short["search_rank"] == 0:
        assert short["choice"] == random["choice"] and short["test"] == random["test"]
    else:
        assert short["choice"] != random["choice"]
    top = random["top"]
    assert 3 <= len(top) <= sq.TOP_KEPT and top[0]["choice"] == random["choice"]
    assert [t["holdout"] for t in top] == sorted((t["holdout"] for t in top), reverse=True)
    assert len({tuple(t["choice"]) for t in top}) == len(top)


@pytest.mark.parametrize("other", ["--no-aware", "--quick"])
def test_aware_only_refuses_the_flags_that_skip_the_awareness_check(sq, capsys, other):
    with pytest.raises(SystemExit):
        sq.main(["--aware-only", other])
    assert "--aware-only runs only the awareness check" in capsys.readouterr().err


def test_an_awareness_row_searches_on_its_schemes_proxy(sq, monkeypatch):
    seen = []
    real = sq._task_and_proxy

    def spy(*names, proxy=None, **params):
        seen.append(proxy)
        return real(*names, proxy=proxy, **params)

    monkeypatch.setattr(sq, "_task_and_proxy", spy)
    row = {
        "model": "digits-cnn",
        "scheme": "channel",
        "hardware": "gpu-jetson-tx2",
        "hardware_params": {"batch": 32},
        "scheme_params": {},
        "budget": 0.75,
        "metric": "latency",
        "seed": 0,
        "episodes": 2,
        "agent": "random",
    }
    out = sq.run_aware(row)
    assert seen == [("finetune", {"steps": 5, "batch_size": 32})] * 2
    assert out["proxy"] == ("finetune", {"steps": 5, "batch_size": 32})
    assert out["flops_policy_target_cost"] >= out["target_dense_floor"]


@pytest.mark.parametrize("name", ["search_quality.json", "search_quality_resnet20.json"])
def test_grid_file_is_what_the_main_track_was_measured_with(sq, name):
    """bench/grids/search_quality.yaml, as loaded, holds the settings the committed main
    track was measured with (its config and every cell), with the module's types."""
    doc = json.loads((sq.ROOT / "bench" / "results" / name).read_text())
    config = doc["config"]
    assert config["episodes"] == sq.EPISODES
    assert config["finetune_steps"] == sq.FINETUNE
    assert config["aware_steps"] == list(sq.AWARE_STEPS)
    assert config["workloads"] == {k: list(v) for k, v in sq.WORKLOADS.items()}
    assert config["search_proxy"] == json.loads(json.dumps(sq.SEARCH_PROXY))
    assert set(config["tracks"]) <= set(sq.TRACKS)
    for cell in doc["cells"]:
        model, pair = cell["model"], (cell["scheme"], cell["hardware"])
        assert model in sq.TRACKS["fashion"]
        assert pair in sq.MODEL_PAIRS.get(model, sq.PAIRS)
        setting = sq._setting(model, *pair)
        assert cell["budget"] in setting.get("budgets", sq.DEFAULT_BUDGETS)
        assert cell["metric"] == setting.get("metric", "latency")
        assert cell["hardware_params"] == setting.get("hardware_params", {})
        assert cell["scheme_params"] == setting.get("scheme_params", {})
        assert cell["finetune"] == sq.FINETUNE[model]
    for row in doc["awareness"]:
        setting = sq.AWARE_SETTINGS[row["model"]][(row["scheme"], row["hardware"])]
        assert row["flops_budget"] in setting["budgets"]


def test_grid_file_types(sq):
    pairs = [*sq.PAIRS, *sq.FASHION_RESNET_PAIRS, *sq.AUG_PAIRS, *sq.RESNET_PAIRS]
    pairs += [p for settings in sq.AWARE_SETTINGS.values() for p in settings]
    pairs += [*sq.PAIR_SETTINGS, *sq.FASHION_CNN_SETTINGS, *sq.RESNET20_FASHION_SETTINGS]
    assert all(isinstance(p, tuple) and len(p) == 2 for p in pairs)
    assert all(p in sq.PAIRS for p in pairs)
    settings = [*sq.PAIR_SETTINGS.values(), *sq.MODEL_PAIR_SETTINGS.values()]
    settings += [s for by_pair in sq.AWARE_SETTINGS.values() for s in by_pair.values()]
    for s in settings:
        assert isinstance(s["budgets"], tuple) and all(type(b) is float for b in s["budgets"])
    assert all(isinstance(v, tuple) for v in (*sq.WORKLOADS.values(), *sq.TRACKS.values()))
    assert all(m in sq.WORKLOADS for models in sq.TRACKS.values() for m in models)
    assert all(type(n) is int for n in (*sq.EPISODES.values(), *sq.FINETUNE.values()))
    assert sq.MODEL_PAIRS["digits-aug"] is sq.AUG_PAIRS
    assert sq.BASELINES == ("uniform", "random", "greedy", "tpe", "cmaes")
