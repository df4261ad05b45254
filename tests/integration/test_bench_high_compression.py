"""The high-compression search benchmark: rows per (setting, method, seed), written as
measured, resumed without re-measuring, reported from the file (smoke-tested on digits)."""

from __future__ import annotations

import json

import pytest


@pytest.fixture(scope="module")
def hc():
    from bench import high_compression

    return high_compression


@pytest.mark.slow
def test_rows_resume_and_report(hc, tmp_path, capsys, monkeypatch):
    # digits-cnn's crossbars are few: its least uniform policy costs more than 0.4.
    monkeypatch.setitem(hc.SETTINGS, "crossbar", {**hc.SETTINGS["crossbar"], "budget": 0.8})
    out = tmp_path / "h.json"
    args = [
        "--model", "digits-cnn", "--data", "digits", "--settings", "crossbar",
        "--methods", "uniform", "random", "--seeds", "0", "--episodes", "3",
        "--epochs", "1", "--threads", "1", "--out", str(out),
    ]  # fmt: skip
    assert hc.main(args) == 0
    doc = json.loads(out.read_text())
    assert [(r["method"], r["seed"]) for r in doc["rows"]] == [("uniform", 0), ("random", 0)]
    for row in doc["rows"]:
        assert row["keep_dense"] == ["first"] and row["epochs"] == 1
        assert row["cost_ratio"] <= 0.8 + 1e-9
        assert 0 <= row["test_before_recovery"] <= 1 and 0 <= row["test"] <= 1
    check = doc["uniform_before_recovery"]["crossbar"]
    assert check["loss_points"] == pytest.approx(
        100 * (check["dense_test"] - check["uniform_before"])
    )
    capsys.readouterr()
    assert hc.main(args) == 0  # resumed: nothing measured again
    assert json.loads(out.read_text())["rows"] == doc["rows"]
    assert hc.main(["--report", "--out", str(out)]) == 0
    report = capsys.readouterr().out
    assert "crossbar" in report and "random" in report and "+" in report


def test_a_budget_no_uniform_policy_meets_is_one_error(hc, tmp_path, monkeypatch):
    monkeypatch.setitem(hc.SETTINGS, "crossbar", {**hc.SETTINGS["crossbar"], "budget": 0.01})
    args = ["--model", "digits-cnn", "--data", "digits", "--settings", "crossbar", "--check"]
    with pytest.raises(SystemExit, match="no uniform policy of digits-cnn is within budget 0.01"):
        hc.main([*args, "--out", str(tmp_path / "h.json")])
    assert not (tmp_path / "h.json").exists()


def test_refuses_rows_of_other_settings(hc, tmp_path):
    out = tmp_path / "h.json"
    out.write_text(json.dumps({"rows": [], "epochs": 3, "episodes": 100, "model": "fashion-vgg"}))
    with pytest.raises(SystemExit):
        hc.main(["--epochs", "1", "--out", str(out)])
