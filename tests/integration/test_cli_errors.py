"""No tracebacks for what users cause: one ``error:`` line, exit code 2, no MLflow run.

Every case here was a traceback (or a bad value accepted silently) before; ``--debug``
shows the traceback on purpose.
"""

from __future__ import annotations

import http.server
import json
import multiprocessing
import os
import socket
import sqlite3
import tempfile
import threading
import time
from pathlib import Path

import mlflow
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from agents.app.cli import _register_optional_commands, app
from agents.app.search import SearchConfig
from agents.base import load_hyperparams
from tracking import StoreError, check_experiment, check_store

runner = CliRunner()
_register_optional_commands()


def run_count() -> int:
    return len(mlflow.search_runs(search_all_experiments=True))


def assert_one_error(res, *fragments: str) -> str:
    """Exit code 2, no traceback, and the output ends in one ``error:`` line."""
    assert res.exit_code == 2, res.output
    assert isinstance(res.exception, SystemExit), repr(res.exception)
    assert "Traceback" not in res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], res.output
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


# --- search: the --config file -------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("budget: abc\n", ["budget must be a number, got 'abc'"]),
        ("episodes: [1]\n", ["episodes must be an integer, got [1]"]),
        ("budget: [\n", ["is not valid YAML", "(line 2, column 1)"]),
        ("- 1\n- 2\n", ["is not a YAML mapping"]),
        ("bogus: 1\n", ["unknown setting(s) bogus; valid: agent,"]),
        ("agent_params: 3\n", ["agent_params must be a mapping of KEY: VALUE, got 3"]),
        ("1: 2\n", ["unknown setting(s) 1"]),
        ("budget: 1e-1\n", ["budget must be a number, got '1e-1'", "write it with a dot"]),
        ("seed: true\n", ["seed must be an integer, got True"]),
        ("finetune_steps: 1000000000000000\n", ["finetune_steps must be an integer in [0, "]),
        ("points: 1000000000\n", ["points must be an integer in [2, 100]"]),
        ("threads: 100000\n", ["threads must be an integer in [1, "]),
        ("episodes: 99999999999999999999\n", ["episodes must be an integer in [1, 1000000]"]),
    ],
)
def test_bad_config_file_is_one_error_naming_the_file(text, fragments, tmp_path):
    path = tmp_path / "search.yml"
    path.write_text(text)
    before = run_count()
    res = runner.invoke(app, ["search", "--config", str(path), "--episodes", "2"])
    assert_one_error(res, f"config file {str(path)!r}", *fragments)
    assert run_count() == before


def test_config_file_that_is_a_directory_or_missing(tmp_path):
    res = runner.invoke(app, ["search", "--config", str(tmp_path)])
    assert_one_error(res, f"config file {str(tmp_path)!r} is a directory")
    res = runner.invoke(app, ["search", "--config", str(tmp_path / "nope.yml")])
    assert_one_error(res, "does not exist")


# --- search: flags and hyperparameters --------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--scheme-param", "foo=1"], "unknown parameter(s) foo for scheme 'balanced'; valid:"),
        (
            ["--hw-param", "n_pe=abc"],
            "hardware parameter 'n_pe' of 'accel-kang-16' must be an integer, got 'abc'",
        ),
        (["--hw-param", "bogus=1"], "unknown parameter(s) bogus for hardware"),
        (["--hp", "net_arch=abc"], "net_arch must be a list of integers >= 1"),
        (["--hp", "learning_rate=abc"], "unknown hyperparameter 'learning_rate'"),
        (
            ["--agent", "sac", "--hp", "learning_rate=abc"],
            "agent 'sac' hyperparameter learning_rate must be a number > 0, got 'abc'",
        ),
        (
            ["--agent", "sac", "--hp", "learning_rate=-0.001"],
            "learning_rate must be > 0, got -0.001",
        ),
        (["--hp", "critic_learning_rate=-1e-3"], "critic_learning_rate must be > 0, got -0.001"),
        (["--hp", "actor_learning_rate=0"], "actor_learning_rate must be > 0, got 0"),
        (["--hp", "batch_size=0"], "batch_size must be an integer >= 1, got 0"),
        (["--hp", "gamma=5"], "gamma must be in [0, 1], got 5"),
        (["--hp", "noise_sigma=-0.5"], "noise_sigma must be >= 0, got -0.5"),
        (["--hp", "action_range=wide"], "unknown action_range 'wide'; valid choices: wall"),
        (["--hp", "x=[1"], "--hp override 'x=[1'"),
        (["--seed", "-1"], "seed must be an integer in [0, 4294967295], got -1"),
        (["--experiment", ""], "experiment name '' is empty"),
        # Absurd sizes (issue 26): refused at once, before a run or a thread exists.
        (["--hp", "buffer_size=1e15"], "buffer_size must be an integer in [1, "),
        (["--hp", "batch_size=1e12"], "batch_size must be an integer in [1, "),
        (["--hp", "batch_size=200000"], "batch_size 200000 must be <= buffer_size 100000"),
        (["--hp", "net_arch=[1000000]"], "net_arch must be a list of integers in [1, 16384]"),
        (["--threads", "100000"], "threads must be an integer in [1, "),
        (["--n-envs", "100000"], "n_envs must be an integer in [1, "),
        (
            ["--episodes", "99999999999999999999"],
            "episodes must be an integer in [1, 1000000], got 99999999999999999999",
        ),
        (["--finetune-steps", "10000000"], "finetune_steps must be an integer in [0, 1000000]"),
        (
            ["--budgets", "0.3:0.8", "--points", "1000000000"],
            "points must be an integer in [2, 100]",
        ),
        (["--shortlist", "5"], "shortlist 5 must be <= episodes 2"),
    ],
)
def test_search_rejects_bad_values_before_any_run(args, message):
    before = run_count()
    t0 = time.monotonic()
    res = runner.invoke(app, ["search", "--episodes", "2", "--no-progress", *args])
    assert_one_error(res, message)
    assert run_count() == before
    assert time.monotonic() - t0 < 30  # validation, not a search


@pytest.mark.parametrize(
    ("agent", "override", "message"),
    [
        ("ddpg", {"tau": 0}, "tau must be in (0, 1], got 0"),
        ("td3", {"policy_delay": 0}, "policy_delay must be an integer >= 1"),
        ("td3", {"noise_decay": 1.5}, "noise_decay must be in (0, 1], got 1.5"),
        ("ppo", {"n_epochs": 0}, "n_epochs must be an integer >= 1"),
        ("ppo", {"clip_range": -0.2}, "clip_range must be > 0"),
        ("ppo", {"learning_rate": float("nan")}, "learning_rate must be a number > 0"),
        ("sac", {"ent_coef": "sometimes"}, "ent_coef must be auto, auto_<initial value>"),
        ("sac", {"buffer_size": 0}, "buffer_size must be an integer >= 1"),
        ("sac", {"reward_baseline": "yes"}, "reward_baseline must be true or false"),
        ("ppo", {"reward_baseline_decay": 1}, "reward_baseline_decay must be in [0, 1)"),
    ],
)
def test_validate_range_checks_hyperparameters(agent, override, message):
    with pytest.raises(ValueError, match=f"agent '{agent}' hyperparameter") as err:
        SearchConfig(agent=agent, agent_params=override)
    assert message in str(err.value)


def test_hyperparameters_normalise_numbers_written_as_text():
    hp = load_hyperparams("sac", {"learning_rate": "3e-4", "ent_coef": "auto_0.1"})
    assert hp["learning_rate"] == pytest.approx(3e-4) and hp["ent_coef"] == "auto_0.1"
    assert load_hyperparams("ddpg", {"batch_size": 32.0})["batch_size"] == 32
    for agent in ("ddpg", "td3", "sac", "ppo", "tpe", "cmaes"):
        load_hyperparams(agent)  # every YAML default passes its own checks


def test_validate_rejects_unknown_proxy_params_and_bad_scheme_param_types():
    with pytest.raises(ValueError, match="unknown parameter\\(s\\) bogus for proxy 'holdout'"):
        SearchConfig(proxy_params={"bogus": 1})
    with pytest.raises(ValueError, match="scheme parameter 'group_size' of 'balanced' must"):
        SearchConfig.from_dict({"scheme_params": {"group_size": "abc"}})
    with pytest.raises(ValueError, match="group_size must be a positive integer, got 0"):
        SearchConfig.from_dict({"scheme_params": {"group_size": 0}})


def test_debug_shows_the_traceback_instead():
    res = runner.invoke(app, ["--debug", "search", "--seed", "-1"])
    assert isinstance(res.exception, ValueError) and "seed must be" in str(res.exception)
    assert res.exit_code == 1
    # The next command without --debug is back to one line.
    assert_one_error(runner.invoke(app, ["search", "--seed", "-1"]), "seed must be")


# --- tracking store checks ----------------------------------------------------------------


def _corrupt_db(tmp_path: Path) -> str:
    path = tmp_path / "corrupt.db"
    path.write_bytes(b"this is not a database" * 64)
    return f"sqlite:///{path}"


def test_check_store_rejects_a_corrupt_or_unreachable_store(tmp_path):
    uri = _corrupt_db(tmp_path)
    for writable in (True, False):
        with pytest.raises(StoreError, match="is not a readable SQLite database") as err:
            check_store(uri, writable=writable)
        assert uri in str(err.value)
    missing = f"sqlite:///{tmp_path}/no/such/dir/m.db"
    with pytest.raises(StoreError, match="does not exist"):
        check_store(missing)
    # A closed port: refused at once, no retries.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    with pytest.raises(StoreError, match=f"cannot reach the MLflow tracking server .*:{port}"):
        check_store(f"http://127.0.0.1:{port}", timeout=2)
    assert time.monotonic() - t0 < 5
    file_store = tmp_path / "a-file"
    file_store.write_text("x")
    with pytest.raises(StoreError, match="is not a directory"):
        check_store(f"file://{file_store}")


def test_check_store_probes_http_once_without_retries():
    class Handler(http.server.BaseHTTPRequestHandler):
        health = True

        def do_GET(self):  # noqa: N802  (http.server's name)
            ok = self.path == "/health" and Handler.health
            self.send_response(200 if ok else 404)
            self.end_headers()
            self.wfile.write(b"OK" if ok else b"")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    uri = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert check_store(uri) == uri
        Handler.health = False  # no /health and no REST API: one probe, then an error
        t0 = time.monotonic()
        with pytest.raises(StoreError, match="does not answer its REST API"):
            check_store(uri, timeout=2)
        assert time.monotonic() - t0 < 10
    finally:
        server.shutdown()


def test_check_store_rejects_a_read_only_sqlite_store(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path}/ro.db"
    check_store(uri)  # creates the tables
    real_connect = sqlite3.connect

    def read_only(path, timeout=5.0):  # as a file the user may not write opens
        return real_connect(f"file:{path}?mode=ro", uri=True, timeout=timeout)

    monkeypatch.setattr("tracking.store.sqlite3.connect", read_only)
    with pytest.raises(StoreError, match="is not writable: attempt to write a readonly"):
        check_store(uri)
    check_store(uri, writable=False)  # reading is fine


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes read-only files")
def test_check_store_rejects_a_read_only_sqlite_file(tmp_path):
    uri = f"sqlite:///{tmp_path}/ro.db"
    check_store(uri)
    (tmp_path / "ro.db").chmod(0o444)
    with pytest.raises(StoreError, match="not writable"):
        check_store(uri)


def test_first_use_of_a_fresh_sqlite_store_by_two_processes(tmp_path):
    """Without the lock, two processes creating MLflow's tables at once fail (duplicate
    columns, alembic version mismatches); with it, both succeed."""
    uri = f"sqlite:///{tmp_path}/fresh.db"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=check_store, args=(uri,)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    with sqlite3.connect(tmp_path / "fresh.db") as con:
        assert con.execute("SELECT count(*) FROM experiments").fetchone() == (1,)
    assert (tmp_path / "fresh.db.lock").exists()


def test_check_experiment_names_a_deleted_experiment_and_how_to_restore():
    client = mlflow.tracking.MlflowClient()
    eid = client.create_experiment("test-cli-errors-deleted")
    client.delete_experiment(eid)
    with pytest.raises(StoreError) as err:
        check_experiment("test-cli-errors-deleted")
    message = str(err.value)
    assert (
        "is deleted" in message and f"mlflow experiments restore --experiment-id {eid}" in message
    )
    assert "--experiment" in message
    assert check_experiment("test-cli-errors-never-made") is None
    with pytest.raises(StoreError, match="empty"):
        check_experiment("")


def test_search_on_a_corrupt_store_is_one_error(tmp_path, monkeypatch):
    uri = _corrupt_db(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    res = runner.invoke(app, ["search", "--episodes", "2", "--no-progress"])
    assert_one_error(res, uri)


def test_search_into_a_deleted_experiment_is_one_error():
    client = mlflow.tracking.MlflowClient()
    client.delete_experiment(client.create_experiment("test-cli-errors-gone"))
    before = run_count()
    res = runner.invoke(
        app, ["search", "--episodes", "2", "--no-progress", "--experiment", "test-cli-errors-gone"]
    )
    assert_one_error(res, "is deleted", "restore")
    assert run_count() == before


# --- export ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exported_run(tmp_path_factory) -> str:
    """A finished run holding a (fake, small) pruned_model/ artifact."""
    src = tmp_path_factory.mktemp("pruned")
    (src / "state_dict.pt").write_bytes(b"weights")
    manifest = {
        "policy": {"test_accuracy": 0.9, "cost_ratio": 0.5},
        "files": {"masked": "state_dict.pt"},
    }
    (src / "manifest.json").write_text(json.dumps(manifest))
    client = mlflow.tracking.MlflowClient()
    eid = mlflow.set_experiment("test-cli-errors").experiment_id
    run = client.create_run(eid)
    client.log_artifacts(run.info.run_id, str(src), "pruned_model")
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


def _tree(root: Path) -> dict[str, bytes]:
    return {str(f.relative_to(root)): f.read_bytes() for f in root.rglob("*") if f.is_file()}


def test_export_of_a_local_store_copies_the_artifacts_in_place(exported_run, tmp_path, monkeypatch):
    """A local SQLite store's export is read where it lies, the same as MLflow downloads
    it, without importing torch or MLflow."""
    import subprocess
    import sys

    import tracking.sqlite_runs

    store = tracking.sqlite_runs.open_store()
    assert store is not None and store.artifact_dir(exported_run) is not None
    fast = tmp_path / "fast"
    res = runner.invoke(app, ["export", exported_run, "--out", str(fast)])
    assert res.exit_code == 0, res.output
    monkeypatch.setattr(tracking.sqlite_runs, "open_store", lambda: None)
    slow = tmp_path / "slow"
    res = runner.invoke(app, ["export", exported_run, "--out", str(slow)])
    assert res.exit_code == 0, res.output
    assert _tree(fast) == _tree(slow) and "manifest.json" in _tree(fast)
    assert store.artifact_dir(exported_run).is_dir()  # the run's own copy stays

    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "import agents.app.cli as cli\n"
        "res = CliRunner().invoke(cli.app, ['export', sys.argv[1], '--out', sys.argv[2]])\n"
        "assert res.exit_code == 0, res.output\n"
        "print(sorted(m for m in ('torch', 'mlflow') if m in sys.modules))\n"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code, exported_run, str(tmp_path / "third")],
        env={**os.environ, "PYTHONPATH": str(root)}, capture_output=True, text=True,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
    assert _tree(tmp_path / "third") == _tree(slow)


def test_export_of_a_run_without_pruned_model(tmp_path):
    client = mlflow.tracking.MlflowClient()
    run = client.create_run(mlflow.set_experiment("test-cli-errors").experiment_id)
    client.set_terminated(run.info.run_id, "KILLED")
    res = runner.invoke(app, ["export", run.info.run_id, "--out", str(tmp_path / "x")])
    assert_one_error(res, "(KILLED) has no pruned model", f"--resume {run.info.run_id}")
    assert not (tmp_path / "x").exists()


def test_export_to_an_unwritable_path(exported_run, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    res = runner.invoke(app, ["export", exported_run, "--out", str(blocker / "model")])
    assert_one_error(res, "cannot write", "is not a directory")
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        res = runner.invoke(app, ["export", exported_run, "--out", str(locked / "model")])
        assert_one_error(res, "is not writable")


def test_export_force_refuses_a_file_and_the_current_directory(exported_run, tmp_path, monkeypatch):
    target = tmp_path / "model.onnx"
    target.write_text("keep me")
    res = runner.invoke(app, ["export", exported_run, "--out", str(target), "--force"])
    assert_one_error(res, "is a file, not an export directory")
    assert target.read_text() == "keep me"
    monkeypatch.chdir(tmp_path)
    for out in (".", str(tmp_path), ".."):
        res = runner.invoke(app, ["export", exported_run, "--out", out, "--force"])
        assert_one_error(res, "is the current directory or one of its parents")
    assert target.read_text() == "keep me"
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "code.py").write_text("x = 1")
    res = runner.invoke(app, ["export", exported_run, "--out", "src", "--force"])
    assert_one_error(res, "is not an hwprune export (no manifest.json)")
    assert (tmp_path / "src" / "code.py").exists()
    res = runner.invoke(app, ["export", exported_run, "--out", "src"])
    assert_one_error(res, "exists; pass --force to replace it")


def test_export_force_replaces_an_export_and_leaves_nothing_when_it_fails(
    exported_run, tmp_path, monkeypatch
):
    out = tmp_path / "model"
    res = runner.invoke(app, ["export", exported_run, "--out", str(out)])
    assert res.exit_code == 0, res.output
    (out / "marker").write_text("earlier export")
    res = runner.invoke(app, ["export", exported_run, "--out", str(out), "--force"])
    assert res.exit_code == 0, res.output
    assert not (out / "marker").exists() and (out / "manifest.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]

    (out / "marker").write_text("earlier export")
    real_rename = Path.rename

    def failing_rename(self, target):
        if self.name == ".model.tmp":
            raise OSError(13, "Permission denied")
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", failing_rename)
    res = runner.invoke(app, ["export", exported_run, "--out", str(out), "--force"])
    assert_one_error(res, f"cannot write {str(out)!r}: Permission denied")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no .model.tmp/
    assert (out / "marker").read_text() == "earlier export"  # the earlier export is back


def test_export_on_a_corrupt_store(tmp_path, monkeypatch):
    uri = _corrupt_db(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    res = runner.invoke(app, ["export", "0123456789abcdef", "--out", str(tmp_path / "x")])
    assert_one_error(res, uri, "is not a readable SQLite database")


# --- cost --policy --------------------------------------------------------------------------


def _cost(policy: Path, *extra: str):
    return runner.invoke(
        app, ["cost", "--model", "tiny", "--scheme", "balanced", "--policy", str(policy), *extra]
    )


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ('{"densities": {"0": null, "2": 0.5, "4": 0.5}}', ["density None for layer '0'"]),
        ('{"densities": {"0": true, "2": 0.5, "4": 0.5}}', ["density True for layer '0'"]),
        ('{"densities": {"0": 1e999, "2": 0.5, "4": 0.5}}', ["density inf for layer '0'"]),
        ('{"densities": ', ["is not valid JSON", "(line 1, column"]),
        ('{"densities": [0.5]}', ["has no 'densities' object"]),
    ],
)
def test_cost_policy_errors_name_the_file(text, fragments, stub_cost_workload, tmp_path):
    policy = tmp_path / "policy.json"
    policy.write_text(text)
    assert_one_error(_cost(policy), f"policy file {str(policy)!r}", *fragments)


def test_cost_policy_that_is_a_directory(stub_cost_workload, tmp_path):
    assert_one_error(_cost(tmp_path), f"policy file {str(tmp_path)!r} is a directory")


def test_cost_partial_policy_needs_allow_partial(stub_cost_workload, tmp_path):
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"densities": {"2.weight": 0.25}}))
    assert_one_error(_cost(policy), "no density for layer(s) 0, 4", "--allow-partial")
    res = _cost(policy, "--allow-partial", "--json")
    assert res.exit_code == 0, res.output
    rows = {row["name"]: row["density"] for row in json.loads(res.stdout)["layers"]}
    assert rows["0"] == 1.0 and rows["4"] == 1.0 and rows["2"] == pytest.approx(0.25)
    res = _cost(policy, "--density", "0.5", "--json")  # the others at --density
    assert res.exit_code == 0, res.output
    help_text = runner.invoke(app, ["cost", "--help"]).output
    assert "--allow-partial" in help_text and "dense" in help_text


# --- property tests: malformed input never ends in a traceback --------------------------------

_TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=0x17F), max_size=12)
_NUMBERISH = st.one_of(
    _TEXT,
    st.integers(-(2**40), 2**40).map(str),
    st.integers(-(10**30), 10**30).map(str),  # beyond every bound (issue 26)
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)
_KEYS = st.sampled_from(
    ["group_size", "n_pe", "learning_rate", "net_arch", "gamma", "batch_size", "buffer_size",
     "foo", ""]
)  # fmt: skip
_OPTIONS = {
    "--model": st.one_of(_TEXT, st.sampled_from(["digits-cnn", "fashion-cnn"])),
    "--scheme": st.one_of(_TEXT, st.sampled_from(["balanced", "channel", "pattern"])),
    "--hardware": st.one_of(_TEXT, st.sampled_from(["accel-kang-16", "reram-128", "flops"])),
    "--metric": st.one_of(_TEXT, st.sampled_from(["latency", "energy"])),
    "--agent": st.one_of(_TEXT, st.sampled_from(["ddpg", "sac", "ppo", "tpe", "uniform"])),
    "--reward": _TEXT,
    "--proxy": _TEXT,
    "--device": _TEXT,
    "--experiment": _TEXT,
    "--budget": _NUMBERISH,
    "--seed": _NUMBERISH,
    "--n-envs": _NUMBERISH,
    "--threads": _NUMBERISH,
    "--finetune-steps": _NUMBERISH,
    "--points": _NUMBERISH,
    "--shortlist": _NUMBERISH,
    "--budgets": _TEXT,
    "--hp": st.builds(lambda k, v: f"{k}={v}", _KEYS, _NUMBERISH),
    "--scheme-param": st.builds(lambda k, v: f"{k}={v}", _KEYS, _NUMBERISH),
    "--hw-param": st.builds(lambda k, v: f"{k}={v}", _KEYS, _NUMBERISH),
    "--bogus-flag": _TEXT,
}
_ARGS = st.lists(
    st.sampled_from(sorted(_OPTIONS)).flatmap(
        lambda opt: _OPTIONS[opt].map(lambda value: [opt, value])
    ),
    max_size=5,
).map(lambda pairs: [x for pair in pairs for x in pair])

_PROPERTY = settings(
    max_examples=15,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _no_traceback(res) -> None:
    assert res.exit_code in (0, 2), (res.exit_code, res.output, repr(res.exception))
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert "Traceback" not in res.output


@_PROPERTY
@given(args=_ARGS)
def test_search_never_tracebacks_on_malformed_arguments(args):
    res = runner.invoke(app, ["search", *args, "--episodes", "0", "--no-progress"])
    _no_traceback(res)
    assert res.exit_code == 2  # --episodes 0: nothing ever runs


_SETTINGS = st.sampled_from(
    ["budget", "episodes", "seed", "agent", "scheme", "agent_params", "hardware_params",
     "scheme_params", "proxy_params", "metric", "checkpoint", "bogus"]
)  # fmt: skip
_YAML_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), _TEXT),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.one_of(_TEXT, _KEYS), inner, max_size=3)
    ),
    max_leaves=6,
)


@_PROPERTY
@given(
    content=st.one_of(
        st.binary(max_size=200),
        st.dictionaries(_SETTINGS, _YAML_VALUES, max_size=4).map(
            lambda d: yaml.safe_dump(d).encode()
        ),
        _YAML_VALUES.map(lambda v: yaml.safe_dump(v).encode()),
    )
)
def test_search_never_tracebacks_on_malformed_config_files(content):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "search.yml"
        path.write_bytes(content)
        res = runner.invoke(app, ["search", "--config", str(path), "--episodes", "0"])
    _no_traceback(res)
    assert res.exit_code == 2


_JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


@_PROPERTY
@given(
    policy=st.one_of(
        _JSON,
        st.dictionaries(st.sampled_from(["0", "2", "4", "9", "2.weight"]), _JSON).map(
            lambda d: {"densities": d}
        ),
    ),
    raw=st.one_of(st.none(), st.binary(max_size=100)),
)
def test_cost_never_tracebacks_on_malformed_policy_files(policy, raw, stub_cost_workload):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "policy.json"
        path.write_bytes(json.dumps(policy).encode() if raw is None else raw)
        _no_traceback(_cost(path))


@settings(_PROPERTY, max_examples=4)
@given(content=st.binary(min_size=0, max_size=300))
def test_search_never_tracebacks_on_garbage_checkpoints(content):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.pt"
        path.write_bytes(content)
        before = run_count()
        # --budget 0.001 is below what the task can reach: even a loadable file stops there.
        res = runner.invoke(
            app,
            ["search", "--checkpoint", str(path), "--budget", "0.001", "--episodes", "2",
             "--no-progress"],
        )  # fmt: skip
    _no_traceback(res)
    assert res.exit_code == 2 and "checkpoint" in res.output
    assert run_count() == before


def test_list_valued_hardware_parameter_reaches_the_model():
    before = run_count()
    res = runner.invoke(
        app,
        [
            "search",
            "--hardware",
            "gpu-h100",
            "--scheme",
            "channel",
            "--hw-param",
            "tiles=[[64, 64, 2, 0.9]]",
            "--budget",
            "0.05",
            "--no-progress",
        ],
    )
    assert_one_error(res, "least achievable cost ratio")
    assert run_count() == before


def test_help_imports_no_heavy_stack():
    """``hwprune --help`` must not load torch, Stable-Baselines3 or MLflow (seconds)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from agents.app.cli import _register_optional_commands\n"
        "_register_optional_commands()\n"
        "heavy = sorted(m for m in ('torch', 'mlflow', 'stable_baselines3', 'ray') "
        "if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


# --- issue 26: a malicious checkpoint is one error line, without torch's warning ----------


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_checkpoint_is_refused_with_only_the_error_line(tmp_path):
    import pickle
    import warnings

    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"w": _Payload(marker)}, protocol=4))
    before = run_count()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = runner.invoke(
            app, ["search", "--checkpoint", str(path), "--episodes", "2", "--no-progress"]
        )
    line = assert_one_error(
        res, f"cannot load checkpoint {str(path)!r}", "weights-only loader refused it"
    )
    assert "weights_only` set to `False`" not in line  # torch advises just that
    assert [ln for ln in res.output.splitlines() if ln.strip()] == [line]
    assert [str(w.message)[:80] for w in caught] == []  # torch's pickle-protocol warning
    assert not marker.exists()
    assert run_count() == before


# --- issue 26: the upper bounds, as properties ----------------------------------------------


def _bounds():
    from agents.checks import MAX_EPISODES, MAX_FINETUNE_STEPS, MAX_FRONT_POINTS, usable_cpus

    return {
        "episodes": (1, MAX_EPISODES),
        "finetune_steps": (0, MAX_FINETUNE_STEPS),
        "points": (2, MAX_FRONT_POINTS),
        "threads": (1, usable_cpus()),
    }


@_PROPERTY
@given(field=st.sampled_from(["episodes", "finetune_steps", "points", "threads"]), data=st.data())
def test_search_sizes_within_their_bounds_pass_and_above_are_refused(field, data):
    low, high = _bounds()[field]
    ok = data.draw(st.integers(low, high), label="within")
    SearchConfig(agent="random", **{field: ok})
    bad = data.draw(st.integers(high + 1, 10**30), label="above")
    with pytest.raises(ValueError, match=rf"^{field} must be an integer in \[{low}, {high}\]"):
        SearchConfig(agent="random", **{field: bad})


@_PROPERTY
@given(agent=st.sampled_from(["ddpg", "td3", "sac"]), data=st.data())
def test_replay_buffer_and_batch_are_bounded_by_memory(agent, data, monkeypatch):
    from agents import base

    memory = data.draw(st.integers(2**20, 2**40), label="memory bytes")
    monkeypatch.setattr(base, "memory_bytes", lambda: memory)
    most = int(base.REPLAY_MEMORY_SHARE * memory) // base.TRANSITION_BYTES
    assert base.replay_capacity() == most
    buffer = data.draw(st.integers(1, most), label="buffer_size")
    batch = data.draw(st.integers(1, buffer), label="batch_size")
    hp = load_hyperparams(agent, {"buffer_size": buffer, "batch_size": batch})
    assert (hp["buffer_size"], hp["batch_size"]) == (buffer, batch)
    for key in ("buffer_size", "batch_size"):
        too_big = data.draw(st.integers(most + 1, 10**20), label=key)
        with pytest.raises(ValueError, match=rf"{key} must be an integer in \[1, {most}\]"):
            load_hyperparams(agent, {key: too_big})
    bigger_batch = data.draw(st.integers(buffer + 1, most + buffer + 1), label="batch > buffer")
    with pytest.raises(ValueError, match=f"must be <= buffer_size {buffer}|in \\[1, {most}\\]"):
        load_hyperparams(agent, {"buffer_size": buffer, "batch_size": bigger_batch})


@settings(_PROPERTY, max_examples=8)
@given(
    option=st.sampled_from(["--episodes", "--threads", "--n-envs", "--finetune-steps"]),
    value=st.integers(2**21, 10**40),
)
def test_cli_refuses_absurd_sizes_at_once_without_a_run(option, value):
    before = run_count()
    res = runner.invoke(app, ["search", option, str(value), "--no-progress"])
    assert_one_error(res, option.removeprefix("--").replace("-", "_"), str(value))
    assert run_count() == before


def test_threads_are_bounded_by_the_cpus_of_this_process(monkeypatch):
    import agents.checks

    monkeypatch.setattr(agents.checks, "usable_cpus", lambda: 3)
    SearchConfig(agent="random", threads=3)
    with pytest.raises(ValueError, match=r"threads must be an integer in \[1, 3\] \(the CPUs"):
        SearchConfig(agent="random", threads=4)
    with pytest.raises(ValueError, match=r"n_envs must be an integer in \[1, 12\]"):
        SearchConfig(agent="random", n_envs=13)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--steps", "2000000"], "steps must be an integer in [1, 1000000], got 2000000"),
        (["--epochs", "100000"], "epochs must be an integer in [1, 1000], got 100000"),
    ],
)
def test_finetune_refuses_absurd_lengths_before_reading_its_source(args, message, tmp_path):
    before = run_count()
    res = runner.invoke(app, ["finetune", str(tmp_path / "no-such-export"), *args])
    assert_one_error(res, message)
    assert run_count() == before


# --- issue 26: output targets are checked before any work -----------------------------------


@pytest.fixture
def read_only_dir(tmp_path):
    """A directory on a read-only file system (a tmpfs mounted ro): unwritable for root too."""
    import subprocess

    where = tmp_path / "ro"
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(where)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here: {done.stderr.decode().strip()}")
    yield where
    subprocess.run(["umount", str(where)], check=False)


def test_search_export_to_an_unwritable_target_fails_before_any_run(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    for target, fragments in (
        ("/proc/x", ["cannot write export directory '/proc/x'", "'/proc' is not writable"]),
        (str(blocker / "model"), ["is not a directory"]),
    ):
        before = run_count()
        t0 = time.monotonic()
        res = runner.invoke(
            app, ["search", "--agent", "random", "--episodes", "2", "--export", target,
                  "--no-progress"],
        )  # fmt: skip
        assert_one_error(res, *fragments)
        assert run_count() == before
        assert time.monotonic() - t0 < 30  # a check, not a search


def test_search_export_into_a_read_only_folder_fails_before_any_run(read_only_dir):
    before = run_count()
    res = runner.invoke(
        app, ["search", "--agent", "random", "--episodes", "2", "--no-progress",
              "--export", str(read_only_dir / "model")],
    )  # fmt: skip
    assert_one_error(res, f"directory {str(read_only_dir)!r} is not writable (Read-only")
    assert run_count() == before


def test_search_with_an_unwritable_state_dir_fails_before_any_run(monkeypatch):
    monkeypatch.setenv("HWPRUNE_STATE_DIR", "/proc/hwprune-state")
    before = run_count()
    res = runner.invoke(app, ["search", "--agent", "random", "--episodes", "2", "--no-progress"])
    assert_one_error(res, "state directory (HWPRUNE_STATE_DIR)", "'/proc' is not writable")
    assert run_count() == before


def test_front_search_export_is_checked_before_any_run():
    before = run_count()
    res = runner.invoke(
        app, ["search", "--agent", "random", "--episodes", "2", "--budgets", "0.4:0.8",
              "--export", "/proc/x", "--no-progress"],
    )  # fmt: skip
    assert_one_error(res, "cannot write export directory '/proc/x'")
    assert run_count() == before


def test_finetune_out_is_checked_before_its_source_is_read(tmp_path, read_only_dir):
    for out in ("/proc/x", str(read_only_dir / "x")):
        before = run_count()
        res = runner.invoke(app, ["finetune", str(tmp_path / "no-such-export"), "--out", out])
        assert_one_error(res, f"cannot write export directory {out!r}", "is not writable")
        assert run_count() == before


def test_export_out_on_proc_or_read_only_is_refused_for_root_too(exported_run, read_only_dir):
    for out in ("/proc/x", str(read_only_dir / "x")):
        res = runner.invoke(app, ["export", exported_run, "--out", out])
        assert_one_error(res, f"cannot write {out!r}", "is not writable")


# --- issue 26: a store half-created by a kill ---------------------------------------------------

HALF_CREATED = Path(__file__).resolve().parents[2].parent / "shared/faults/half_created_store.db"


@pytest.fixture
def half_created_store(tmp_path, monkeypatch) -> Path:
    """A copy of the fixture store a kill -9 left with ``_alembic_tmp_experiments``."""
    if not HALF_CREATED.is_file():
        pytest.skip(f"fixture {HALF_CREATED} is absent (CI keeps ../shared beside the repo)")
    path = tmp_path / "half.db"
    path.write_bytes(HALF_CREATED.read_bytes())
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{path}")
    return path


def _tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as con:
        return {name for (name,) in con.execute("SELECT name FROM sqlite_master")}


def test_a_half_created_store_is_repaired_saying_so_in_one_line(half_created_store):
    assert "_alembic_tmp_experiments" in _tables(half_created_store)
    res = runner.invoke(app, ["runs"])
    assert res.exit_code == 0, res.output
    assert "Traceback" not in res.output and "already exists" not in res.output
    notes = [line for line in res.output.splitlines() if line.startswith("note:")]
    assert len(notes) == 1, res.output
    assert "repaired MLflow tracking store" in notes[0]
    assert "dropped _alembic_tmp_experiments" in notes[0]
    assert "_alembic_tmp_experiments" not in _tables(half_created_store)
    again = runner.invoke(app, ["runs"])  # repaired once: nothing more to say
    assert again.exit_code == 0 and "note:" not in again.output, again.output
    client = mlflow.tracking.MlflowClient(f"sqlite:///{half_created_store}")
    run = client.create_run(client.create_experiment("after-repair"))
    client.log_metric(run.info.run_id, "x", 1.0)
    client.set_terminated(run.info.run_id)
    listed = runner.invoke(app, ["runs", "--experiment", "after-repair", "--json"])
    assert listed.exit_code == 0 and run.info.run_id in listed.output, listed.output


def test_a_leftover_copy_holding_the_only_rows_is_refused_not_guessed(half_created_store):
    with sqlite3.connect(half_created_store) as con:
        con.execute("DROP TABLE experiment_tags")
        con.execute("ALTER TABLE experiments RENAME TO _alembic_tmp_experiments_x")
        con.execute("DROP TABLE _alembic_tmp_experiments")
        con.execute("ALTER TABLE _alembic_tmp_experiments_x RENAME TO _alembic_tmp_experiments")
    with pytest.raises(StoreError, match="table experiments exists only as _alembic_tmp_exp"):
        check_store(f"sqlite:///{half_created_store}")
    assert_one_error(runner.invoke(app, ["runs"]), "restore the store from a backup")


def _create_store(uri: str) -> None:
    check_store(uri)


def test_a_store_killed_during_its_creation_leaves_nothing_half_made(tmp_path):
    """kill -9 while MLflow's tables are being created: no store, or a whole one."""
    import signal

    path = tmp_path / "fresh.db"
    uri = f"sqlite:///{path}"
    ctx = multiprocessing.get_context("spawn")
    proc = ctx.Process(target=_create_store, args=(uri,))
    proc.start()
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".fresh.db.creating-*")) and time.monotonic() < deadline:
        assert proc.is_alive() or proc.exitcode is None, "it finished before it could be killed"
        time.sleep(0.005)
    assert list(tmp_path.glob(".fresh.db.creating-*")), "the creation never started"
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(30)
    assert not path.exists()  # nothing half-made where the store belongs
    check_store(uri)  # the next use creates it whole, and clears the killed attempt's file
    assert not list(tmp_path.glob(".fresh.db.creating-*"))
    assert {"experiments", "runs", "metrics", "alembic_version"} <= _tables(path)
    assert not {t for t in _tables(path) if t.startswith("_alembic_tmp_")}
    assert mlflow.tracking.MlflowClient(uri).get_experiment("0").name == "Default"


def test_search_keep_dense_unknown_layer_is_one_error_before_any_run():
    before = run_count()
    res = runner.invoke(app, ["search", "--keep-dense", "frist", "--episodes", "2"])
    assert_one_error(res, "no layer 'frist'", "valid choices: first, last, features.0")
    assert run_count() == before
