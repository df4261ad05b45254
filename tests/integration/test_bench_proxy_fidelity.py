"""The proxy-fidelity benchmark's bookkeeping: the truth's self-agreement and the tau grid."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def pf():
    from bench import proxy_fidelity

    return proxy_fidelity


def test_truth_self_tau_agrees_and_disagrees(pf):
    assert pf.truth_self_tau([[0.1, 0.1], [0.2, 0.3], [0.3, 0.5]]) == pytest.approx(1.0)
    assert pf.truth_self_tau([[0.1, 0.5], [0.2, 0.3], [0.3, 0.1]]) == pytest.approx(-1.0)


def test_truth_self_tau_needs_two_finetunes(pf):
    assert pf.truth_self_tau([[0.1], [0.2], [0.3]]) is None
    assert pf.truth_self_tau([]) is None


def _cell(tau_holdout: float, self_tau: float | None) -> dict:
    return {
        "network": "fashion-cnn",
        "scheme": "balanced",
        "budget": 0.5,
        "policies": 5,
        "truth_epochs": float("nan"),
        "truth_range": [0.9, 0.92],
        "truth_self_tau": self_tau,
        "proxies": {"holdout": {"tau": tau_holdout, "p_value": 0.1, "ms_per_eval": 3.0}},
    }


def test_mean_tau_and_grid_include_the_truth_ceiling(pf):
    cells = [_cell(0.2, 0.4), _cell(0.6, None)]
    means = pf.mean_tau(cells)
    assert means["holdout"] == pytest.approx(0.4)
    assert means[pf.TRUTH_SELF] == pytest.approx(0.4)
    grid = pf.tau_grid(cells).splitlines()
    assert grid[0].split()[-2:] == ["holdout", "truth-self"]
    assert grid[2].split()[-2:] == ["0.200", "0.400"]
    assert grid[3].split()[-2:] == ["0.600", "nan"]
    assert grid[-1].split()[-2:] == ["0.400", "0.400"]
    table = pf.table(cells)
    assert pf.TRUTH_SELF in table and "   -  " in table


@pytest.mark.slow
def test_recovered_regime_records_resume_and_report(pf, tmp_path, monkeypatch, capsys):
    import json

    monkeypatch.setitem(pf.RECOVERED, "model", "digits-cnn")
    monkeypatch.setitem(pf.RECOVERED, "data", "digits")
    out = tmp_path / "r.json"
    args = ["--recovered", "--budgets", "0.3", "--policies", "3", "--epochs", "1",
            "--proxies", "holdout", "weight-energy", "--out", str(out)]  # fmt: skip
    pf.main(args)
    doc = json.loads(out.read_text())
    assert [r["index"] for r in doc["records"]] == [0, 1, 2]
    for r in doc["records"]:
        assert set(r["scores"]) == {"holdout", "weight-energy"}
        assert 0 <= r["truth"] <= 1 and r["kept_share"] <= 0.3 + 1e-9
    assert len({tuple(r["choice"]) for r in doc["records"]}) == 3  # distinct policies
    capsys.readouterr()
    pf.main(args)  # resumed: nothing measured again
    assert json.loads(out.read_text())["records"] == doc["records"]
    pf.main(["--report", str(out)])
    report = capsys.readouterr().out
    assert "after 1 epochs of recovery" in report and "weight-energy" in report
    with pytest.raises(SystemExit):  # records of another truth length are not mixed
        pf.main([*args[:6], "2", *args[7:]])


def test_recovered_top_settings_are_checked_before_any_work(pf, capsys):
    with pytest.raises(SystemExit):
        pf.main(["--recovered", "--top-settings", "pattern", "bogus"])
    err = capsys.readouterr().err
    assert "--top-settings bogus: valid: pattern, crossbar, channel" in err
