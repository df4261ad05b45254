"""hwprune finetune: structure held fixed, before/after logged, linked to its search."""

from __future__ import annotations

import tempfile
from pathlib import Path

import mlflow
import pytest
import torch
from typer.testing import CliRunner

from agents import SearchConfig, run_search
from agents.app.cli import _register_optional_commands, app
from agents.app.finetune_run import finetune_state_file, resume_finetune, run_finetune
from pruning.export import read_manifest
from tracking import discard_download, download_artifacts

runner = CliRunner()
_register_optional_commands()


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    out = tmp_path_factory.mktemp("ft") / "export"
    config = SearchConfig(agent="random", episodes=2, seed=2, experiment="test-finetune")
    return run_search(config, export_dir=out)


def _state(run_id: str) -> dict[str, torch.Tensor]:
    path = download_artifacts(run_id, "pruned_model")
    try:
        return torch.load(path / "state_dict.pt", weights_only=True)
    finally:
        discard_download(path)


def _leftovers() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("hwprune-run-*")}


@pytest.mark.slow
def test_finetune_of_a_run_keeps_the_structure_and_logs_before_and_after(searched):
    before_dirs = _leftovers()
    res = runner.invoke(app, ["finetune", searched.run_id, "--steps", "10", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert _leftovers() == before_dirs  # downloads are cleaned up
    run_id = res.output.split("MLflow run id:")[1].split()[0]
    run = mlflow.get_run(run_id)
    assert run.data.tags["mlflow.parentRunId"] == searched.run_id
    assert run.data.metrics["before/test_accuracy"] == pytest.approx(searched.best_test_accuracy)
    assert "after/test_accuracy" in run.data.metrics
    history = mlflow.tracking.MlflowClient().get_metric_history(run_id, "finetune/test_accuracy")
    assert [m.step for m in sorted(history, key=lambda m: m.step)] == [0, 1]
    source, tuned = _state(searched.run_id), _state(run_id)
    changed = 0
    for name, weight in source.items():
        if name.endswith("weight") and weight.dim() > 1:
            assert not bool(((weight == 0) & (tuned[name] != 0)).any()), name
            changed += int(not torch.equal(tuned[name], weight))
    assert changed > 0  # it did train
    uri = res.output.split("MLflow model:")[1].split()[0]
    assert uri == f"runs:/{run_id}/digits-cnn-balanced-accel-kang-16"  # says what it is
    model = mlflow.pyfunc.load_model(uri)
    assert model.predict(torch.rand(3, 1, 8, 8).numpy()).shape == (3,)


@pytest.mark.slow
def test_finetune_of_an_export_directory(searched, tmp_path):
    result = run_finetune(
        str(searched.export_dir), steps=5, export_dir=tmp_path / "tuned", experiment="test-ft"
    )
    assert result.steps == 5 and len(result.per_epoch) == 1
    manifest = read_manifest(tmp_path / "tuned")
    assert manifest["finetuned_from"] == str(searched.export_dir)
    assert manifest["policy"]["test_accuracy"] == pytest.approx(result.after)
    assert manifest["task"]["scheme"] == "balanced"
    tags = mlflow.get_run(result.run_id).data.tags
    assert tags["mlflow.parentRunId"] == searched.run_id


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["0123abcd"], "no MLflow run '0123abcd'"),
        (["0123abcd", "--lr", "-1"], "lr must be"),
        (["0123abcd", "--steps", "0"], "steps must be an integer >= 1"),
        (["0123abcd", "--epochs", "-1"], "epochs must be an integer >= 1"),
        (["0123abcd", "--epochs", "5000"], "epochs must be an integer in [1, 1000]"),
        (["0123abcd", "--steps", "99999999999"], "steps must be an integer in [1, 1000000]"),
        ([], "missing SOURCE"),
        (["--resume", "0123abcd", "--epochs", "2"], "drop --epochs"),
        (["0123abcd", "--resume", "0123abcd"], "drop SOURCE"),
        (["--resume", "0123abcd"], "no MLflow run '0123abcd'"),
    ],
)
def test_finetune_bad_input_is_one_error_line(args, message):
    res = runner.invoke(app, ["finetune", *args, "--no-progress"])
    assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output


@pytest.mark.slow
def test_interrupted_recovery_keeps_the_last_finished_epoch(searched):
    """Ctrl-C in epoch 2 of 3: the run is KILLED and holds epoch 1's model, which kept the
    structure; the message says how to continue (the CLI's part is checked below)."""
    import signal

    from agents.app.finetune_run import FinetuneInterrupted
    from agents.app.search import SearchInterrupted
    from envs.workloads.recovery import steps_per_epoch

    per_epoch = steps_per_epoch(1137, 64)  # the digits training split, batch 64
    seen = [0]

    def progress(n: int) -> None:
        seen[0] += n
        if seen[0] == per_epoch + 3:  # inside the second epoch
            raise SearchInterrupted(signal.SIGINT)

    with pytest.raises(FinetuneInterrupted) as info:
        run_finetune(searched.run_id, epochs=3, progress=progress, experiment="test-ft")
    exc = info.value
    assert exc.epochs_done == 1 and exc.epochs == 3
    run = mlflow.get_run(exc.run_id)
    assert run.info.status == "KILLED"
    source, kept = _state(searched.run_id), _state(exc.run_id)
    for name, weight in source.items():
        if name.endswith("weight") and weight.dim() > 1:
            assert not bool(((weight == 0) & (kept[name] != 0)).any()), name
    manifest_dir = download_artifacts(exc.run_id, "pruned_model")
    try:
        manifest = read_manifest(manifest_dir)
    finally:
        discard_download(manifest_dir)
    assert manifest["policy"]["interrupted_after_epochs"] == 1
    assert manifest["finetune_steps"] == per_epoch

    # --resume goes on from epoch 1's state to the uninterrupted run's model.
    totals, steps = [], [0]
    resumed = resume_finetune(
        exc.run_id, progress=lambda n: steps.__setitem__(0, steps[0] + n), on_total=totals.append
    )
    assert totals == [3 * per_epoch - per_epoch] and steps == [2 * per_epoch]
    assert resumed.run_id == exc.run_id and resumed.first_epoch == 2
    assert len(resumed.per_epoch) == 2
    whole = run_finetune(searched.run_id, epochs=3, experiment="test-ft")
    assert resumed.after == whole.after and resumed.per_epoch == whole.per_epoch[1:]
    for name, value in _state(exc.run_id).items():
        assert torch.equal(value, _state(whole.run_id)[name]), name
    assert mlflow.get_run(exc.run_id).info.status == "FINISHED"
    history = mlflow.tracking.MlflowClient().get_metric_history(
        exc.run_id, "finetune/test_accuracy"
    )
    assert sorted(m.step for m in history) == [0, 1, 2, 3]
    assert not finetune_state_file(exc.run_id).exists()  # finished: the state goes
    res = runner.invoke(app, ["finetune", "--resume", exc.run_id, "--no-progress"])
    assert res.exit_code == 2 and "is FINISHED" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["finetune", "--resume", searched.run_id, "--no-progress"])
    assert res.exit_code == 2 and "is not a fine-tune run" in res.output


@pytest.mark.slow
def test_a_fine_tune_stopped_before_its_first_epoch_cannot_resume(searched):
    """Nothing finished, nothing kept: --resume says so and how to start anew."""
    import signal

    from agents.app.finetune_run import FinetuneInterrupted
    from agents.app.search import SearchInterrupted

    def progress(_n: int) -> None:
        raise SearchInterrupted(signal.SIGTERM)

    with pytest.raises(FinetuneInterrupted) as info:
        run_finetune(searched.run_id, epochs=2, progress=progress, experiment="test-ft")
    assert info.value.epochs_done == 0
    res = runner.invoke(app, ["finetune", "--resume", info.value.run_id, "--no-progress"])
    assert res.exit_code == 2 and "Traceback" not in res.output
    out = " ".join(res.output.split())
    assert "kept no finished epoch on this machine" in out
    assert f"hwprune finetune {searched.run_id}" in out


def test_interrupted_recovery_message_says_how_to_continue(capsys):
    import typer

    from agents.app.commands.finetune import _report_interrupted
    from agents.app.finetune_run import FinetuneInterrupted

    with pytest.raises(typer.Exit) as info:
        _report_interrupted(FinetuneInterrupted(2, "abc123", 1, 3))
    assert info.value.exit_code == 130
    out = " ".join(capsys.readouterr().out.split())  # rich wraps long lines
    assert "keeps the model of epoch 1" in out
    assert "continue with: hwprune finetune --resume abc123" in out
    assert "from epoch 2 on the same schedule" in out


def test_recovery_bounds_are_the_cli_bounds():
    """The recipe's own bounds and the CLI's are one figure each, stated twice."""
    from agents.checks import MAX_FINETUNE_EPOCHS, MAX_FINETUNE_STEPS
    from envs.workloads.recovery import MAX_EPOCHS, MAX_STEPS

    assert (MAX_EPOCHS, MAX_STEPS) == (MAX_FINETUNE_EPOCHS, MAX_FINETUNE_STEPS)
