"""Recovery (envs.workloads.recovery): masks held, a cosine schedule, distillation, and the search's
--finetune-epochs, whose recovered model is the one exported, logged and registered."""

from __future__ import annotations

import copy

import mlflow
import pytest
import torch

from agents import SearchConfig, run_search
from envs import TaskSpec
from envs.workloads.builtin import get_workload
from envs.workloads.evaluation import distillation_loss
from envs.workloads.recovery import RecoveryRecipe, recover
from pruning import apply_masks, make_permanent
from pruning.export import read_manifest


def _masked_digits(density: float = 0.3):
    workload = get_workload("digits-cnn")
    model = copy.deepcopy(workload.model)
    masks = {}
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Conv2d):
            w = module.weight.detach().abs().flatten()
            k = max(1, int(density * w.numel()))
            masks[f"{name}.weight"] = module.weight.abs() >= w.topk(k).values[-1]
    apply_masks(model, masks)
    return workload, model, masks


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("epochs", -1, "epochs must be an integer in"),
        ("epochs", 10**6, "epochs must be an integer in"),
        ("steps", 10**15, "steps must be an integer in"),
        ("lr", 0.0, "lr must be in"),
        ("lr", float("nan"), "lr must be a number"),
        ("distill_alpha", 1.5, "distill_alpha must be in"),
        ("crop", -2, "crop must be an integer in"),
        ("gradual", -0.1, r"gradual must be in \[0, 1\)"),
        ("gradual", 1.0, r"gradual must be in \[0, 1\), got 1.0"),
    ],
)
def test_recipe_refuses_bad_values(field, value, message):
    with pytest.raises(ValueError, match=message):
        RecoveryRecipe(**{field: value})


@pytest.mark.parametrize("distill", [False, True])
def test_recover_keeps_the_masks_and_improves_a_heavily_pruned_model(distill):
    workload, model, masks = _masked_digits(0.15)
    from envs.workloads.evaluation import accuracy

    before = accuracy(model, workload.test)
    recipe = RecoveryRecipe(epochs=3, lr=0.02, distill=distill, seed=1)
    steps = []
    recover(model, workload.train, recipe, teacher=workload.model, on_step=steps.append)
    assert steps == list(range(1, recipe.total_steps(len(workload.train)) + 1))
    after = accuracy(model, workload.test)
    make_permanent(model)
    for name, keep in masks.items():
        weight = model.get_parameter(name)
        assert not bool(weight[~keep].any()), name
    assert after > before + 0.02, (before, after)


def test_distill_needs_a_teacher():
    workload, model, _ = _masked_digits()
    with pytest.raises(ValueError, match="teacher"):
        recover(model, workload.train, RecoveryRecipe(distill=True))


def test_distillation_loss_is_zero_against_itself_and_positive_otherwise():
    torch.manual_seed(0)
    teacher = torch.nn.Linear(4, 3)
    x = torch.randn(8, 4)
    with torch.no_grad():
        assert float(distillation_loss(teacher(x), teacher, x, 4.0)) == pytest.approx(0, abs=1e-6)
        assert float(distillation_loss(torch.zeros(8, 3), teacher, x, 4.0)) > 0


def _digits_task(scheme: str = "pattern"):
    from envs import make_task

    return make_task(TaskSpec(model="digits-cnn", data="digits", scheme=scheme))


@pytest.mark.parametrize("scheme", ["pattern", "balanced", "unstructured"])
def test_gradual_masks_ramp_from_dense_down_to_the_policy_exactly(scheme):
    from agents.app.finalize import gradual_masks

    task = _digits_task(scheme)
    choice = [0] * len(task.decisions)  # every layer at its least level
    at = gradual_masks(task, choice)
    assert at(0.0) == {}  # dense: no layer masked
    final, want = at(1.0), task.masks(choice)
    assert final.keys() == want.keys()
    assert all(torch.equal(final[k], want[k]) for k in want)
    kept = []
    for t in [i / 16 for i in range(17)]:
        masks = at(t)
        kept.append(sum(int(masks[k].sum()) if k in masks else want[k].numel() for k in want))
    assert kept == sorted(kept, reverse=True) and kept[0] > kept[8] > kept[-1]


def test_gradual_recovery_ends_under_the_policys_masks_and_records_its_path():
    from agents.app.finalize import gradual_masks, masked_model

    task = _digits_task()
    choice = [0] * len(task.decisions)
    model = masked_model(task, choice)
    recipe = RecoveryRecipe(steps=32, lr=0.01, gradual=0.5, seed=0)
    at = gradual_masks(task, choice)
    seen = []
    name = max(task.masks(choice), key=lambda k: task.masks(choice)[k].numel())
    module = model.get_submodule(name.rsplit(".", 1)[0])
    recover(model, task.workload.train, recipe, masks_at=at,
            on_step=lambda _s: seen.append(int(module.weight_mask.sum())))  # fmt: skip
    # 16 ramp steps, one mask move after each: the policy's masks from step 16 on.
    assert seen[:16] == sorted(seen[:16], reverse=True) and seen[0] > seen[15]
    assert seen[15:] == [int(task.masks(choice)[name].sum())] * (len(seen) - 15)
    make_permanent(model)
    for key, keep in task.masks(choice).items():
        assert not bool(model.get_parameter(key)[~keep].any()), key


def test_gradual_recovery_needs_the_mask_path():
    workload, model, _ = _masked_digits()
    with pytest.raises(ValueError, match="masks_at"):
        recover(model, workload.train, RecoveryRecipe(gradual=0.5))


def _recovering_search(**settings) -> SearchConfig:
    """A 3-episode search on digits-cnn recovering its result 2 distilled epochs."""
    base = {
        "task": TaskSpec(scheme="unstructured", hardware="accel-kang-16"),
        "budget": 0.3,
        "agent": "random",
        "episodes": 3,
        "finetune_epochs": 2,
        "distill": True,
        "experiment": "test-recovery",
    }
    return SearchConfig(**{**base, **settings})


@pytest.mark.slow
def test_search_with_finetune_epochs_exports_and_logs_the_recovered_model(tmp_path):
    config = _recovering_search(gradual=0.25)
    calls = []

    def progress_for(who: str, total: int):
        calls.append((who, total))
        return lambda _step: None

    result = run_search(config, export_dir=tmp_path / "out", recovery_progress=progress_for)
    assert [who for who, _ in calls] == ["best", "uniform"]
    s = result.summary()
    assert s["best_test_accuracy"] != s["best_test_accuracy_before_recovery"]
    run = mlflow.get_run(result.run_id)
    assert run.data.metrics["best/test_accuracy"] == pytest.approx(s["best_test_accuracy"])
    assert run.data.metrics["best/test_accuracy_before_recovery"] == pytest.approx(
        s["best_test_accuracy_before_recovery"]
    )
    manifest = read_manifest(tmp_path / "out")
    assert manifest["recovery"]["epochs"] == 2 and manifest["recovery"]["distill"] is True
    assert manifest["recovery"]["gradual"] == 0.25
    assert manifest["policy"]["test_accuracy"] == pytest.approx(s["best_test_accuracy"])
    assert manifest["policy"]["test_accuracy_before_recovery"] == pytest.approx(
        s["best_test_accuracy_before_recovery"]
    )
    assert "(recovered)" in run.data.tags["mlflow.note.content"].splitlines()[0]
    summary = mlflow.artifacts.load_text(f"runs:/{result.run_id}/summary.md")
    assert "recovered: 2 epochs" in summary and "test acc, recovered (2 ep)" in summary
    assert "masks reached over the first 25%" in summary


@pytest.mark.slow
def test_a_search_stopped_in_its_recovery_resumes_it_from_the_last_epoch():
    """Ctrl-C in the second recovery epoch: --resume replays the episodes and recovers
    from the first epoch's state, to the uninterrupted search's result."""
    import signal

    from agents.app.search import SearchInterrupted, load_resume
    from tracking import state_dir

    config = _recovering_search(experiment="test-recovery-resume")
    whole = run_search(config).summary()

    seen: dict[str, list[int]] = {}

    def stop_in_second_epoch(who: str, total: int):
        steps = seen.setdefault(who, [])

        def on_step(done: int) -> None:
            steps.append(done)
            if done == total // 2 + 1:
                raise SearchInterrupted(signal.SIGINT)

        return on_step

    with pytest.raises(SearchInterrupted) as stopped:
        run_search(config, recovery_progress=stop_in_second_epoch)
    run_id = stopped.value.run_id
    assert stopped.value.recovery_kept  # the CLI says the finished epochs are kept
    assert (state_dir() / run_id / "recovery").is_dir()
    half = len(seen["best"]) - 1

    seen.clear()

    def record(who: str, total: int):
        return seen.setdefault(who, []).append

    cfg, state = load_resume(run_id)
    resumed = run_search(cfg, resume=state, recovery_progress=record)
    assert seen["best"][0] == half + 1  # the first epoch was not trained again
    s = resumed.summary()
    for key in (
        "best_test_accuracy",
        "best_test_accuracy_before_recovery",
        "uniform_test_accuracy",
    ):
        assert s[key] == whole[key], key
    assert not (state_dir() / run_id / "recovery").exists()  # the run finished: states go
    assert mlflow.get_run(run_id).info.status == "FINISHED"


@pytest.mark.slow
def test_a_front_recovers_every_point_and_its_uniform_policy(tmp_path):
    from agents.app.frontier import run_frontier

    config = SearchConfig(
        task=TaskSpec(scheme="unstructured", hardware="accel-kang-16"),
        budgets=(0.3, 0.6),
        points=2,
        agent="random",
        episodes=4,
        finetune_epochs=1,
        experiment="test-recovery",
    )
    calls = []

    def progress_for(label: str, total: int):
        calls.append(label)
        return lambda _step: None

    result = run_frontier(config, export_dir=tmp_path / "out", recovery_progress=progress_for)
    assert set(calls) <= {"b0.300", "b0.300 uniform", "b0.600", "b0.600 uniform"}
    assert {"b0.300", "b0.600"} <= set(calls)
    front = mlflow.artifacts.load_dict(f"runs:/{result.run_id}/front.json")
    assert front["recovery_epochs"] == 1
    history = mlflow.tracking.MlflowClient().get_metric_history(
        result.run_id, "front/test_accuracy_before_recovery"
    )
    assert len(history) == 2
    for p in result.points:
        manifest = read_manifest(tmp_path / "out" / f"b{p.budget:.3f}")
        assert manifest["recovery"]["epochs"] == 1
        assert manifest["policy"]["test_accuracy"] == pytest.approx(p.test_accuracy)
        assert manifest["policy"]["test_accuracy_before_recovery"] != p.test_accuracy


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"finetune_epochs": -1}, "finetune_epochs must be an integer"),
        ({"finetune_epochs": 10**9}, "finetune_epochs must be an integer"),
        ({"distill": True}, "distill applies to recovery"),
        ({"gradual": 0.5}, "gradual applies to recovery"),
        ({"finetune_epochs": 1, "gradual": 1.0}, "gradual must be"),
        ({"finetune_epochs": 1, "gradual": -0.5}, "gradual must be"),
        ({"finetune_epochs": 1, "finetune_steps": 5}, "pass one of them"),
    ],
)
def test_search_config_refuses_bad_recovery_settings(settings, message):
    with pytest.raises(ValueError, match=message):
        SearchConfig(**settings)


def test_recovery_trains_with_every_usable_core_and_restores_the_search_threads(monkeypatch):
    """A search evaluates on 1 thread; its recovery, one batched training job, on all."""
    from agents.app import finalize
    from envs import make_task

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("agents.checks.usable_cpus", lambda: 3)
    assert finalize.recovery_threads() == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # a Ray worker's share wins
    assert finalize.recovery_threads() == 2

    seen = []

    def fake_recovered(task, choice, recipe, *, on_step=None, states=None):
        seen.append(torch.get_num_threads())
        return finalize.Recovered(torch.nn.Identity(), 0.5, 0.6)

    monkeypatch.setattr(finalize, "recovered_model", fake_recovered)
    task = make_task(TaskSpec())
    from envs.proxies.builtin import torch_threads

    with torch_threads(1):
        finalize.delivered_models(
            task, {"best": task.dense_choice}, recipe=RecoveryRecipe(epochs=1)
        )
        assert torch.get_num_threads() == 1
    assert seen == [2]
