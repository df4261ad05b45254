"""End to end: a tracked search on digits-cnn, its MLflow run, the export, the CLI."""

from __future__ import annotations

import json

import mlflow
import pytest
import torch
import yaml
from typer.testing import CliRunner

from agents import SearchConfig, run_search
from agents.app.cli import _register_optional_commands, app
from envs import get_workload
from envs.workloads.evaluation import accuracy
from pruning.export import load_exported, read_manifest

runner = CliRunner()
_register_optional_commands()


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One short DDPG search on digits-cnn, exported."""
    out = tmp_path_factory.mktemp("export") / "model"
    config = SearchConfig(episodes=24, seed=1, experiment="test-search")
    result = run_search(config, command="pytest", export_dir=out)
    return config, result, out


@pytest.mark.slow
def test_search_is_within_budget_and_logged(finished):
    config, result, _ = finished
    assert result.episodes == 24
    assert result.best.within_budget and result.best.cost_ratio <= config.budget + 1e-9
    run = mlflow.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["task.scheme"] == "balanced" and run.data.params["budget"] == "0.5"
    for key in ("best/holdout_accuracy", "best/test_accuracy", "uniform/holdout_accuracy"):
        assert key in run.data.metrics
    # DDPG's YAML refines in the last 20% of the episodes: 5 of 24.
    assert run.data.metrics["search/refine_episodes"] == 5 == result.refined_episodes
    # SB3's own training figures arrive through the MLflow KVWriter.
    assert any(key.startswith("sb3/train/") for key in run.data.metrics)
    history = mlflow.tracking.MlflowClient().get_metric_history(result.run_id, "episode/accuracy")
    assert len(history) == 24
    artifacts = {a.path for a in mlflow.tracking.MlflowClient().list_artifacts(result.run_id)}
    assert {"best_policy.json", "config.yaml", "command.txt", "pruned_model", "plots"} <= artifacts


@pytest.mark.slow
def test_best_is_at_least_as_good_as_any_recorded_episode(finished):
    _, result, _ = finished
    policy = mlflow.artifacts.load_dict(f"runs:/{result.run_id}/best_policy.json")
    assert policy["holdout_accuracy"] == pytest.approx(result.best.accuracy)
    assert set(policy["densities"]) >= {"features.0"} or len(policy["densities"]) >= 7


@pytest.mark.slow
def test_export_loads_and_reproduces_recorded_test_accuracy(finished, tmp_path):
    _, result, out = finished
    manifest = read_manifest(out)
    recorded = mlflow.get_run(result.run_id).data.metrics["best/test_accuracy"]
    workload = get_workload("digits-cnn")
    program = load_exported(out)
    assert accuracy(program, workload.test) == pytest.approx(recorded)
    # The plain state dict loads safely into the original architecture, same accuracy.
    model = get_workload("digits-cnn").model
    model.load_state_dict(torch.load(out / "state_dict.pt", weights_only=True))
    assert accuracy(model, workload.test) == pytest.approx(recorded)
    assert manifest["parameters"]["nonzero"] < manifest["parameters"]["total"]
    # `hwprune export` writes the same model from the run id.
    dest = tmp_path / "again"
    res = runner.invoke(app, ["export", result.run_id, "--out", str(dest)])
    assert res.exit_code == 0, res.output
    assert json.loads((dest / "manifest.json").read_text())["run_id"] == result.run_id
    assert accuracy(load_exported(dest), workload.test) == pytest.approx(recorded)


def test_export_of_unknown_run_fails_clearly(tmp_path):
    res = runner.invoke(app, ["export", "0123456789abcdef", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2
    assert "no MLflow run '0123456789abcdef'" in res.output
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--scheme", "balancd"], "Did you mean 'balanced'"),
        (["--hardware", "nope"], "unknown hardware preset 'nope'"),
        (["--model", "resnet-9000"], "unknown model 'resnet-9000'"),
        (["--agent", "dqn"], "unknown agent 'dqn'"),
        (["--budget", "1.5"], "budget 1.5 is outside (0, 1]"),
        (["--budget", "0"], "budget 0.0 is outside (0, 1]"),
        (["--metric", "speed"], "unknown cost metric 'speed'"),
        (["--hp", "bogus=1"], "unknown hyperparameter 'bogus'"),
        (["--hp", "refine_fraction=1"], "refine_fraction must be in [0, 1), got 1"),
        (["--budget", "0.01"], "least achievable cost ratio"),
        (["--shortlist", "-1"], "shortlist must be an integer >= 0"),
        (["--shortlist-proxy", "finetun"], "Did you mean 'finetune'"),
    ],
)
def test_search_rejects_bad_input_before_any_run(args, message, tmp_path):
    before = len(mlflow.search_runs(search_all_experiments=True))
    res = runner.invoke(app, ["search", "--episodes", "2", *args, "--export", str(tmp_path / "e")])
    assert res.exit_code == 2, res.output
    assert message in " ".join(res.output.split())
    assert len(mlflow.search_runs(search_all_experiments=True)) == before
    assert not (tmp_path / "e").exists()


def test_list_names_every_registry():
    res = runner.invoke(app, ["list", "--json"])
    assert res.exit_code == 0, res.output
    listing = json.loads(res.output)
    assert "digits-cnn" in listing["models"]
    assert {"balanced", "unstructured"} <= set(listing["schemes"])
    assert "accel-kang-16" in listing["hardware"]
    assert {"ddpg", "uniform"} <= set(listing["agents"])
    assert "holdout" in listing["proxies"]


@pytest.mark.slow
def test_search_budgets_logs_a_front_in_one_run():
    res = runner.invoke(
        app,
        [
            "search",
            "--budgets",
            "0.4:0.8",
            "--points",
            "3",
            "--episodes",
            "12",
            "--agent",
            "td3",
            "--no-progress",
            "--experiment",
            "test-front",
        ],
    )
    assert res.exit_code == 0, res.output
    run = mlflow.search_runs(experiment_names=["test-front"]).iloc[0]
    front = mlflow.artifacts.load_dict(f"runs:/{run.run_id}/front.json")
    points = front["points"]
    assert len(points) == 3
    assert all(p["cost_ratio"] <= p["budget"] + 1e-9 for p in points)


def test_search_budgets_rejects_a_malformed_range():
    res = runner.invoke(app, ["search", "--budgets", "0.3-0.8"])
    assert res.exit_code == 2 and "is not LOW:HIGH" in res.output


@pytest.mark.slow
def test_parallel_envs_in_subprocesses_record_every_episode():
    config = SearchConfig(
        episodes=8,
        n_envs=2,
        agent="ddpg",
        seed=3,
        experiment="test-parallel",
        agent_params={"warmup_episodes": 2},
    )
    result = run_search(config)
    # 6 learned in the subprocesses, the last 2 refined in-process (a fresh env).
    assert result.episodes == 8 and result.refined_episodes == 2
    history = mlflow.tracking.MlflowClient().get_metric_history(result.run_id, "episode/cost_ratio")
    assert len(history) == 8 and all(m.value <= config.budget + 1e-9 for m in history)


def test_unknown_device_is_rejected():
    with pytest.raises(ValueError, match="unknown device 'tpu'; valid choices: auto, cpu, cuda"):
        SearchConfig(device="tpu")


@pytest.mark.parametrize("scheme", ["balanced", "unstructured", "channel", "crossbar", "pattern"])
def test_an_unnamed_proxy_is_the_schemes_and_the_config_holds_it(scheme):
    from agents.app.search import default_proxy
    from envs import TaskSpec

    hardware = {"channel": "gpu-jetson-tx2", "crossbar": "reram-128"}.get(scheme, "accel-kang-16")
    from envs.proxies.builtin import resolved_proxy_params

    config = SearchConfig(task=TaskSpec(scheme=scheme, hardware=hardware))
    name, params = default_proxy(scheme)
    params = resolved_proxy_params(name, params)  # holdout's precision is recorded too
    assert (config.proxy, config.proxy_params) == (name, params)
    assert name == ("finetune" if scheme == "channel" else "holdout")
    # The stored config names it, so a resumed or re-read search scores the same way.
    again = SearchConfig.from_dict(config.as_dict())
    assert (again.proxy, again.proxy_params) == (name, params)


@pytest.mark.parametrize("scheme", ["balanced", "channel", "pattern"])
def test_a_search_that_recovers_a_large_network_scores_by_a_short_finetune(scheme, monkeypatch):
    """Over the threshold and recovering: ``RECOVERY_PROXY``, whatever the scheme; under
    it, or not recovering, or with a proxy named: as before."""
    from agents.app import search
    from envs import TaskSpec
    from envs.workloads.builtin import parameter_count

    assert parameter_count("fashion-vgg") >= search.RECOVERY_PROXY_MIN_PARAMS
    assert parameter_count("digits-cnn") < search.RECOVERY_PROXY_MIN_PARAMS
    assert parameter_count("no-such-workload") is None
    hardware = {"channel": "gpu-jetson-tx2"}.get(scheme, "accel-kang-16")
    task = TaskSpec(scheme=scheme, hardware=hardware)  # digits-cnn: no data to load
    assert SearchConfig(task=task, finetune_epochs=1).proxy == search.default_proxy(scheme)[0]
    monkeypatch.setattr(search, "RECOVERY_PROXY_MIN_PARAMS", parameter_count("digits-cnn"))
    config = SearchConfig(task=task, finetune_epochs=1)
    assert (config.proxy, config.proxy_params) == search.RECOVERY_PROXY
    again = SearchConfig.from_dict(config.as_dict())  # stored resolved: a resume scores alike
    assert (again.proxy, again.proxy_params) == search.RECOVERY_PROXY
    assert SearchConfig(task=task).proxy == search.default_proxy(scheme)[0]  # no recovery
    named = SearchConfig(task=task, finetune_epochs=1, proxy="weight-energy")
    assert named.proxy == "weight-energy"


def test_a_named_proxy_or_parameter_wins_over_the_schemes():
    from envs import TaskSpec

    channel = TaskSpec(scheme="channel", hardware="gpu-jetson-tx2")
    assert SearchConfig(task=channel, proxy="holdout").proxy_params == {"precision": "int8"}
    tuned = SearchConfig(task=channel, proxy_params={"steps": 9})
    assert tuned.proxy == "finetune"
    assert tuned.proxy_params == {"steps": 9, "batch_size": 32}
    with pytest.raises(
        ValueError, match="unknown parameter\\(s\\) refit_head for proxy 'finetune'"
    ):
        SearchConfig(task=channel, proxy_params={"refit_head": False})


def test_final_model_is_the_network_the_proxy_scored():
    from agents.app.finalize import pruned_model
    from envs import get_proxy, make_task

    task = make_task()
    # The full evaluation: the default int8 one scores the same network within rounding.
    proxy = get_proxy("holdout", workload=task.workload, precision="fp32")
    for choice in ([0] * len(task.decisions), [len(d.levels) // 2 for d in task.decisions]):
        model = pruned_model(task, choice)
        # Same masks, same BatchNorm batches: the exported model scores what the search saw.
        assert accuracy(model, task.workload.holdout) == pytest.approx(
            proxy.evaluate(task.masks(choice)), abs=1e-9
        )


def test_cli_search_from_a_config_file_with_a_flag_overriding_it(tmp_path):
    cfg = tmp_path / "search.yml"
    cfg.write_text(
        "task: {model: digits-cnn, scheme: unstructured}\n"
        "budget: 0.4\nagent: random\nepisodes: 3\nexperiment: test-cli-config\n"
    )
    res = runner.invoke(app, ["search", "--config", str(cfg), "--budget", "0.6", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "random vs uniform: unstructured on accel-kang-16" in res.output
    run_id = res.output.split("MLflow run id:")[1].split()[0]
    stored = mlflow.artifacts.load_text(f"runs:/{run_id}/config.yaml")
    config = SearchConfig.from_dict(
        {k: v for k, v in yaml.safe_load(stored).items() if k in ("task", "budget", "agent")}
    )
    assert config.task.scheme == "unstructured" and config.budget == 0.6
    assert config.agent == "random"


@pytest.mark.slow
def test_logged_model_predicts_raw_images_at_the_recorded_accuracy(finished):
    _, result, _ = finished
    model = mlflow.pyfunc.load_model(f"{result.model_uri}")
    test = get_workload("digits-cnn").test
    raw = test.raw(len(test))
    assert raw.shape[1:] == (1, 8, 8)  # the dataset's own images, not the 16x16 input
    predicted = model.predict(raw)
    assert float((predicted == test.labels.numpy()).mean()) == pytest.approx(
        result.best_test_accuracy
    )
    probabilities = model.predict(raw[:3], params={"output": "probabilities"})
    assert probabilities.shape == (3, 10)
    assert probabilities.sum(axis=1) == pytest.approx([1.0, 1.0, 1.0], abs=1e-5)


def test_register_puts_the_model_in_the_registry_with_its_figures():
    config = SearchConfig(agent="random", episodes=2, experiment="test-register")
    result = run_search(config, register="test-digits-balanced")
    client = mlflow.tracking.MlflowClient()
    (version,) = client.search_model_versions("name='test-digits-balanced'")
    assert version.run_id == result.run_id
    assert version.tags["scheme"] == "balanced" and version.tags["hardware"] == "accel-kang-16"
    assert float(version.tags["test_accuracy"]) == pytest.approx(
        result.best_test_accuracy, abs=1e-4
    )
    assert version.tags["fine_tuned"] == "no: BatchNorm re-estimated only"
    assert version.description.startswith("digits-cnn pruned by balanced for accel-kang-16: ")
    assert f"test accuracy {version.tags['test_accuracy']}" in version.description
    assert "Fine-tuned: no" in version.description
    model = mlflow.pyfunc.load_model("models:/test-digits-balanced/1")
    assert model.predict(get_workload("digits-cnn").test.raw(4)).shape == (4,)


@pytest.mark.slow
def test_run_opens_as_model_training_with_its_summary_and_dense_reference(finished):
    config, result, _ = finished
    run = mlflow.get_run(result.run_id)
    experiment = mlflow.tracking.MlflowClient().get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert run.info.run_name.endswith(f"-s{config.seed}")
    # The description is what the UI shows unfolded: headline figures and the curve.
    note = run.data.tags["mlflow.note.content"]
    assert note.startswith(f"**Best: test {100 * result.best_test_accuracy:.2f}% (pruned)")
    assert f"dense {100 * result.dense_test_accuracy:.2f}%" in note
    assert f"uniform {100 * result.uniform_test_accuracy:.2f}%" in note
    assert f"get-artifact?path=plots/search_curve_small.png&run_uuid={result.run_id}" in note
    assert len(note.splitlines()) == 2  # fits the UI's ~100 px before "Show more"
    summary = mlflow.artifacts.load_text(f"runs:/{result.run_id}/summary.md")
    assert f"{result.best_test_accuracy:.4f}" in summary and "| dense |" in summary
    assert note.startswith(summary.splitlines()[0])
    assert run.data.metrics["dense/holdout_accuracy"] == pytest.approx(
        result.dense_holdout_accuracy
    )
    assert result.dense_holdout_accuracy >= result.best.accuracy - 0.05


def test_a_run_stored_before_precision_existed_resumes_in_fp32(monkeypatch):
    import agents.app.search as search

    old = SearchConfig().as_dict()
    old["proxy_params"] = {}  # what config.yaml held before holdout had a precision
    monkeypatch.setattr(search, "check_store", lambda: None)
    monkeypatch.setattr(search, "run_state", lambda run_id: ("KILLED", old, [], 0))
    config, _ = search.load_resume("old-run")
    assert config.proxy == "holdout" and config.proxy_params == {"precision": "fp32"}
    new = SearchConfig().as_dict()
    monkeypatch.setattr(search, "run_state", lambda run_id: ("KILLED", new, [], 0))
    assert search.load_resume("new-run")[0].proxy_params == {"precision": "int8"}


def test_keep_dense_round_trips_through_the_config_and_yaml():
    from envs import TaskSpec

    config = SearchConfig(task=TaskSpec(keep_dense=["first"]), episodes=2)
    assert config.task.keep_dense == ("first",)
    text = yaml.safe_dump(config.as_dict())
    assert SearchConfig.from_dict(yaml.safe_load(text)) == config
    with pytest.raises(ValueError, match="keep_dense must be a list of layer names"):
        TaskSpec(keep_dense=["first", ""])
