"""The fashion-vgg headline benchmark: rows in the issue's schema, written as measured,
resumed without re-measuring, and reported from the file (smoke-tested on digits-cnn)."""

from __future__ import annotations

import json

import pytest

KEYS = {
    "claim", "scheme", "hardware", "policy", "weight_compression", "mac_compression",
    "cost_ratio", "speedup", "test", "reference", "reference_test", "loss_points", "epochs",
}  # fmt: skip


@pytest.fixture(scope="module")
def hl():
    from bench import headlines_vgg

    return headlines_vgg


@pytest.mark.slow
def test_kang_rows_resume_and_report(hl, tmp_path, capsys):
    out = tmp_path / "h.json"
    args = ["--model", "digits-cnn", "--data", "digits", "--epochs", "1", "--threads", "1"]
    assert hl.main([*args, "--claims", "kang", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    (row,) = doc["rows"]
    assert KEYS <= row.keys()
    assert row["claim"] == "kang" and row["reference"] == "unstructured"
    assert row["loss_points"] == pytest.approx(100 * (row["reference_test"] - row["test"]))
    assert row["speedup"] > 1 and row["epochs"] == 1
    assert doc["dense"]["epochs"] == 1
    capsys.readouterr()
    # A second run keeps the measured row (same numbers, nothing re-measured).
    assert hl.main([*args, "--claims", "kang", "--out", str(out)]) == 0
    assert "kang: kept from" in capsys.readouterr().err
    assert json.loads(out.read_text())["rows"] == doc["rows"]
    assert hl.main(["--report", "--out", str(out)]) == 0
    assert "balanced" in capsys.readouterr().out


def test_claim_targets(hl):
    row = {"weight_compression": 8.2, "mac_compression": 8.9, "loss_points": 0.4, "speedup": 3}
    assert hl.CLAIMS["pcnn"].meets(row) and hl.CLAIMS["ikr"].meets(row)
    assert not hl.CLAIMS["pcnn"].meets({**row, "loss_points": 0.6})
    assert not hl.CLAIMS["ikr"].meets({**row, "mac_compression": 5.9})
    assert hl.CLAIMS["kang"].meets({**row, "speedup": 2.0, "loss_points": 0.3})
    assert not hl.CLAIMS["radu"].meets({**row, "speedup": 1.4})


def test_refuses_mixing_epochs(hl, tmp_path):
    out = tmp_path / "h.json"
    out.write_text(json.dumps({"rows": [], "epochs": 3, "model": "fashion-vgg"}))
    with pytest.raises(SystemExit):
        hl.main(["--epochs", "1", "--out", str(out)])


def test_budget_at_compression_hits_the_anchor_policies(hl, monkeypatch):
    """The affine map between cost and inverse compression passes through the uniform
    least-level policies it is fitted on; the first conv, kept dense, counts as dense."""
    import dataclasses

    monkeypatch.setitem(hl.WORKLOAD, "model", "digits-cnn")
    monkeypatch.setitem(hl.WORKLOAD, "data", "digits")
    claim = hl.CLAIMS["pcnn"]
    task = hl._task(claim)
    assert task.layers[0].name not in {d.name for d in task.decisions}
    for level in (0, 1):
        choice = [level] * len(task.decisions)
        sizes = hl.compression(task, choice, hl.kept_dense(task, claim))
        at = dataclasses.replace(claim, compression=sizes["storage_compression"])
        assert hl.budget_at_compression(task, at) == pytest.approx(task.cost_ratio(choice))
    # The first conv kept dense stores all its weights: less compression than without.
    with_first = hl.compression(task, [0] * len(task.decisions), hl.kept_dense(task, claim))
    pruned = hl._task(dataclasses.replace(claim, keep_dense=()))
    without = hl.compression(pruned, [0] * len(pruned.decisions))
    assert with_first["parameter_compression"] < without["parameter_compression"]


@pytest.mark.slow
def test_a_claim_stopped_in_its_recovery_is_resumed_by_the_next_start(
    hl, tmp_path, monkeypatch, capsys
):
    """SIGTERM in the searched policy's recovery: the file names the claim's run under
    ``pending``; the next start resumes that run (no new search) and clears it."""
    import dataclasses
    import signal

    import mlflow

    from agents.app import finalize
    from agents.app.search import SearchInterrupted

    out = tmp_path / "h.json"
    args = ["--model", "digits-cnn", "--data", "digits", "--epochs", "1", "--threads", "1"]
    args += ["--episodes", "4", "--claims", "liang", "--out", str(out)]
    real = finalize.recover
    calls = []

    def stopped_once(*a, **kw):
        calls.append(1)
        if len(calls) == 2:  # the dense control's recovery is the first
            raise SearchInterrupted(signal.SIGTERM)
        return real(*a, **kw)

    monkeypatch.setattr(finalize, "recover", stopped_once)
    # digits-cnn's crossbars cannot go down to the fashion-vgg claim's 0.4.
    monkeypatch.setitem(hl.CLAIMS, "liang", dataclasses.replace(hl.CLAIMS["liang"], budget=0.8))
    with pytest.raises(SearchInterrupted):
        hl.main(args)
    doc = json.loads(out.read_text())
    run_id = doc["pending"]["liang"]
    assert doc["rows"] == [] and mlflow.get_run(run_id).info.status == "KILLED"
    capsys.readouterr()

    assert hl.main(args) == 0
    assert f"liang: resuming run {run_id}" in capsys.readouterr().err
    doc = json.loads(out.read_text())
    assert "pending" not in doc
    assert {r["run_id"] for r in doc["rows"]} == {run_id}
    assert mlflow.get_run(run_id).info.status == "FINISHED"
