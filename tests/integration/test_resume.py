"""Searches that survive interruption: the journal, signals, and --resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
from typer.testing import CliRunner

from agents import SearchConfig, run_search
from agents.app.cli import app
from agents.app.search import load_resume
from agents.recorder import EpisodeRecorder, ReplayDiverged
from tracking import EpisodeJournal, state_dir
from tracking.journal import read_records

runner = CliRunner()

SETTINGS = ["--episodes", "20", "--seed", "4", "--no-progress"]


def _info(choice: list[int], acc: float = 0.9) -> dict:
    return {
        "accuracy": acc,
        "reward": acc,
        "cost_ratio": 0.5,
        "density": 0.5,
        "budget": 0.5,
        "within_budget": True,
        "densities": {"a": 0.5},
        "choice": choice,
        "cost": {"latency_s": 1.0},
    }


class ListSink:
    """An episode sink that keeps the episode numbers it was sent."""

    def __init__(self) -> None:
        self.episodes: list[int] = []

    def write_episode(self, episode: int, metrics: dict) -> None:
        self.episodes.append(episode)


def test_journal_keeps_whole_episodes_and_drops_a_torn_tail(tmp_path):
    journal = EpisodeJournal(tmp_path / "j.jsonl")
    journal.append({"episode": 0})
    journal.append({"episode": 1})
    journal.close()
    with open(journal.path, "a") as fh:
        fh.write('{"episode": 2, "acc')  # the writer died mid-line
    assert [r["episode"] for r in journal.records()] == [0, 1]
    journal.append({"episode": 2})  # the torn line is cut before appending
    assert [r["episode"] for r in read_records(journal.path)] == [0, 1, 2]


def test_journal_with_a_corrupt_middle_line_is_an_error(tmp_path):
    path = tmp_path / "j.jsonl"
    path.write_text('{"episode": 0}\nnot json\n{"episode": 2}\n{"episode": 3}\n')
    with pytest.raises(ValueError, match="corrupt at line 2"):
        list(read_records(path))


def test_replay_retraces_the_journal_without_rewriting_it(tmp_path):
    journal = EpisodeJournal(tmp_path / "j.jsonl")
    first = EpisodeRecorder(journal=journal)
    for c in ([1, 2], [2, 2], [0, 1]):
        first.record(_info(c))
    past = journal.records()

    sink = ListSink()
    again = EpisodeRecorder(sinks=[sink], journal=journal, replay=past, logged=2)
    for c in ([1, 2], [2, 2], [0, 1], [3, 3]):
        again.record(_info(c))
    assert [r["choice"] for r in journal.records()] == [[1, 2], [2, 2], [0, 1], [3, 3]]
    assert sink.episodes == [2, 3]  # 0 and 1 were already in the store

    diverging = EpisodeRecorder(replay=past)
    diverging.record(_info([1, 2]))
    with pytest.raises(ReplayDiverged, match="diverged at episode 1"):
        diverging.record(_info([0, 0]))


def _episode_metrics(run_id: str) -> list[tuple[int, float]]:
    history = mlflow.tracking.MlflowClient().get_metric_history(run_id, "episode/accuracy")
    return sorted((m.step, m.value) for m in history)


def _start(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen, Path]:
    """A CLI search in a subprocess with its own state dir."""
    states = tmp_path / "state"
    env = {**os.environ, "HWPRUNE_STATE_DIR": str(states)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agents.app.cli",
            "search",
            *SETTINGS,
            "--experiment",
            "resume",
            *extra,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return proc, states


def _wait_for_episodes(proc: subprocess.Popen, states: Path, n: int) -> str:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        journals = list(states.glob("*/journal.jsonl"))
        if journals and len(list(read_records(journals[0]))) >= n:
            return journals[0].parent.name
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.05)
    raise AssertionError("the search never reached the episode to interrupt")


@pytest.fixture(scope="module")
def uninterrupted():
    """The reference: the same search, never interrupted."""
    config = SearchConfig(episodes=20, seed=4, experiment="resume-reference")
    return run_search(config)


@pytest.mark.slow
def test_search_killed_hard_resumes_to_the_uninterrupted_result(tmp_path, uninterrupted):
    proc, states = _start(tmp_path)
    run_id = _wait_for_episodes(proc, states, 7)
    proc.kill()  # SIGKILL: no handler runs
    proc.wait()
    assert mlflow.get_run(run_id).info.status == "RUNNING"
    os.environ["HWPRUNE_STATE_DIR"], saved = str(states), os.environ["HWPRUNE_STATE_DIR"]
    try:
        config, state = load_resume(run_id)
        assert len(state.records) >= 7 and state.logged <= len(state.records)
        result = run_search(config, resume=state)
    finally:
        os.environ["HWPRUNE_STATE_DIR"] = saved
    assert result.run_id == run_id and mlflow.get_run(run_id).info.status == "FINISHED"
    # Every episode exactly once, and the same episodes as the uninterrupted search.
    resumed = _episode_metrics(run_id)
    assert [s for s, _ in resumed] == list(range(20))
    assert resumed == _episode_metrics(uninterrupted.run_id)
    assert result.best.choice == uninterrupted.best.choice
    assert result.best.episode == uninterrupted.best.episode
    # SB3's training figures of the replayed part are not logged twice.
    client = mlflow.tracking.MlflowClient()
    sb3_keys = [k for k in mlflow.get_run(run_id).data.metrics if k.startswith("sb3/")]
    assert sb3_keys
    for key in sb3_keys:
        steps = [m.step for m in client.get_metric_history(run_id, key)]
        assert len(steps) == len(set(steps)), key
    assert result.best_test_accuracy == pytest.approx(uninterrupted.best_test_accuracy)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_keeps_episodes_and_best_policy_and_says_how_to_resume(tmp_path, sig):
    proc, states = _start(tmp_path)
    run_id = _wait_for_episodes(proc, states, 5)
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, out
    assert "Traceback" not in out
    assert f"resume with: hwprune search --resume {run_id}" in out
    assert mlflow.get_run(run_id).info.status == "KILLED"
    journal = list(read_records(states / run_id / "journal.jsonl"))
    logged = _episode_metrics(run_id)
    assert [s for s, _ in logged] == list(range(len(journal)))  # nothing lost
    policy = mlflow.artifacts.load_dict(f"runs:/{run_id}/best_policy.json")
    assert policy["interrupted_after_episodes"] == len(journal)
    best = max(journal, key=lambda r: (r["within_budget"], r["accuracy"], -r["cost_ratio"]))
    assert policy["choice"] == best["choice"]
    files = {a.path for a in mlflow.tracking.MlflowClient().list_artifacts(run_id, "pruned_model")}
    assert "pruned_model/manifest.json" in files


def test_resume_refuses_a_finished_run_and_other_flags(uninterrupted):
    res = runner.invoke(app, ["search", "--resume", uninterrupted.run_id])
    assert res.exit_code == 2 and "is FINISHED" in res.output
    res = runner.invoke(app, ["search", "--resume", uninterrupted.run_id, "--budget", "0.3"])
    assert res.exit_code == 2 and "drop --budget" in res.output
    res = runner.invoke(app, ["search", "--resume", "0123abcd"])
    assert res.exit_code == 2 and "no MLflow run '0123abcd'" in res.output


def test_journal_lives_in_the_state_dir_and_the_run(uninterrupted):
    local = state_dir() / uninterrupted.run_id / "journal.jsonl"
    records = list(read_records(local))
    assert [r["episode"] for r in records] == list(range(20))
    client = mlflow.tracking.MlflowClient()
    copy = client.download_artifacts(uninterrupted.run_id, "state/journal.jsonl")
    assert json.loads(Path(copy).read_text().splitlines()[-1])["episode"] == 19


@pytest.mark.slow
def test_store_failing_mid_search_loses_nothing_and_resume_uploads_it(monkeypatch, uninterrupted):
    client_cls = mlflow.tracking.MlflowClient
    real_log_batch = client_cls.log_batch
    calls = {"n": 0}

    def failing_log_batch(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 3:  # config, uniform and one episode land; then the store goes
            raise mlflow.exceptions.MlflowException("database is locked (simulated)")
        return real_log_batch(self, *args, **kwargs)

    config = SearchConfig(episodes=20, seed=4, experiment="resume-store")
    from tracking import StoreFailure
    from tracking.run import SearchRun

    monkeypatch.setattr(client_cls, "log_batch", failing_log_batch)
    monkeypatch.setattr(SearchRun, "__init__", _flush_every_episode(SearchRun.__init__))
    with pytest.raises(StoreFailure, match="--resume") as err:
        run_search(config)
    monkeypatch.undo()
    run_id = err.value.run_id
    assert len(list(read_records(err.value.journal))) == 20  # the search went on
    assert len(_episode_metrics(run_id)) < 20
    cfg, state = load_resume(run_id)
    result = run_search(cfg, resume=state)
    assert _episode_metrics(run_id) == _episode_metrics(uninterrupted.run_id)
    assert result.best.choice == uninterrupted.best.choice
    assert mlflow.get_run(run_id).info.status == "FINISHED"


def _flush_every_episode(init):
    def wrapped(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.flush_every = 1

    return wrapped


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
def test_parallel_workers_die_with_a_killed_parent_and_the_search_resumes(tmp_path):
    proc, states = _start(tmp_path, "--n-envs", "2")
    run_id = _wait_for_episodes(proc, states, 4)
    workers = _children(proc.pid)
    assert len(workers) >= 2
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 20
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(w) for w in workers)
    os.environ["HWPRUNE_STATE_DIR"], saved = str(states), os.environ["HWPRUNE_STATE_DIR"]
    try:
        config, state = load_resume(run_id)
        assert config.n_envs == 2
        result = run_search(config, resume=state)
    finally:
        os.environ["HWPRUNE_STATE_DIR"] = saved
    assert result.episodes == 20
    assert [s for s, _ in _episode_metrics(run_id)] == list(range(20))


# --- issue 26: a foreign record in a journal is one error line; the run is left as it was ----


def _killed_run(experiment: str, *, stop_after: int = 4, episodes: int = 8) -> str:
    """A random search stopped (as by SIGTERM) after ``stop_after`` episodes: KILLED."""
    from agents.app.search import SearchInterrupted

    seen = {"n": 0}

    def stop(n: int) -> None:
        seen["n"] += n
        if seen["n"] >= stop_after:
            raise SearchInterrupted(signal.SIGTERM)

    config = SearchConfig(agent="random", episodes=episodes, seed=3, experiment=experiment)
    with pytest.raises(SearchInterrupted) as err:
        run_search(config, progress=stop)
    run_id = err.value.run_id
    assert mlflow.get_run(run_id).info.status == "KILLED"
    return run_id


def _rewrite_journal(run_id: str, edit) -> None:
    path = state_dir() / run_id / "journal.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    path.write_text("".join(json.dumps(r) + "\n" for r in edit(records)))


def _resume_is_refused_leaving_the_run(run_id: str, *fragments: str) -> None:
    before = _episode_metrics(run_id)
    res = runner.invoke(app, ["search", "--resume", run_id, "--no-progress"])
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert [line for line in lines if line.startswith("error:")] == lines[-1:], res.output
    for fragment in fragments:
        assert fragment in lines[-1], lines[-1]
    assert mlflow.get_run(run_id).info.status == "KILLED"  # as it was
    assert _episode_metrics(run_id) == before


def test_a_foreign_record_met_in_the_replay_leaves_the_run_as_it_was():
    run_id = _killed_run("resume-foreign-replay")

    def swap_choice(records):
        records[2]["choice"] = [0 if c else 1 for c in records[2]["choice"]]
        return records

    _rewrite_journal(run_id, swap_choice)
    _resume_is_refused_leaving_the_run(
        run_id, "diverged at episode 2", "is not this search's", "left as it was"
    )


@pytest.mark.parametrize(
    ("edit", "fragments"),
    [
        (lambda rs: [*rs[:3], rs[1], *rs[3:]], ["at line 4 (it is episode 1, where episode 3"]),
        (lambda rs: [*rs, {"hello": 1}], ["at line 5 (it lacks episode, accuracy"]),
        (lambda rs: [*rs, [1, 2]], ["at line 5 (it is a list, not an episode record)"]),
        (
            lambda rs: [*rs[:4], {**rs[3], "episode": 4, "choice": "x"}],
            ["at line 5 (its choice has the wrong type)"],
        ),
    ],
)
def test_a_journal_line_that_is_no_record_of_this_run_is_refused_before_resuming(edit, fragments):
    run_id = _killed_run("resume-foreign-line")
    _rewrite_journal(run_id, edit)
    _resume_is_refused_leaving_the_run(
        run_id, "holds a record that is not this search's", *fragments
    )


# --- issue 24: the journal's scores are of one model; a resume on other weights is refused ----


def test_a_search_seed_prunes_the_workloads_own_weights():
    """Every seed searches the same trained model (a seed once retrained fashion-vgg)."""
    from envs.workloads.base import weights_digest

    tasks = [SearchConfig(agent="random", seed=s).build_task() for s in (0, 3)]
    assert tasks[0] is tasks[1]
    assert weights_digest(tasks[0].workload.model) == weights_digest(tasks[1].workload.model)


def test_a_resume_on_other_weights_is_refused_leaving_the_run(monkeypatch):
    run_id = _killed_run("resume-other-weights")
    recorded = load_resume(run_id)[1].workload_digest
    assert recorded is not None and len(recorded) == 64
    monkeypatch.setattr("agents.app.search.weights_digest", lambda model: "f" * 64)
    _resume_is_refused_leaving_the_run(
        run_id, f"weights with sha256 {recorded[:16]}", "are ffffffffffffffff", "new search"
    )


def test_a_seeded_run_from_before_the_digest_is_refused(tmp_path):
    """Such a run searched a model trained with its seed, which no search rebuilds now."""
    import yaml

    run_id = _killed_run("resume-before-digest")
    client = mlflow.tracking.MlflowClient()
    config = yaml.safe_load(
        Path(client.download_artifacts(run_id, "config.yaml", tmp_path)).read_text()
    )
    del config["workload_digest"]
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "config.yaml").write_text(yaml.safe_dump(config))
    client.log_artifact(run_id, str(tmp_path / "old" / "config.yaml"))
    assert load_resume(run_id)[1].workload_digest is None
    _resume_is_refused_leaving_the_run(run_id, "trained with seed 3", "start a new search")


# --- issue 26: a full disk under the journal or the store ---------------------------------------


def _full_disk_after(monkeypatch, lines: int, *, torn: bool = True) -> None:
    """The journal's disk fills after ``lines`` more whole lines; the next write lands
    half a line (``torn``) and then fails with ENOSPC, as a real full disk does."""
    import errno

    import tracking.journal

    real_write = tracking.journal._write
    state = {"left": lines, "torn": torn}

    def write(fd, data):
        if state["left"] > 0:
            state["left"] -= 1
            return real_write(fd, data)
        if state["torn"] and len(data) > 1:
            state["torn"] = False
            return real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tracking.journal, "_write", write)


def test_a_journal_write_that_fails_is_undone_and_named(tmp_path, monkeypatch):
    from tracking import JournalWriteError

    journal = EpisodeJournal(tmp_path / "run" / "journal.jsonl", run_id="abc123")
    for i in range(3):
        journal.append({"episode": i})
    _full_disk_after(monkeypatch, 1)
    journal.append({"episode": 3})
    with pytest.raises(JournalWriteError, match="No space left on device") as err:
        journal.append({"episode": 4, "pad": "x" * 100})
    message = str(err.value)
    assert f"cannot write the episode journal {str(journal.path)!r}" in message
    assert "the disk mounted at '/" in message and "HWPRUNE_STATE_DIR" in message
    assert "run abc123 stops with its 4 episodes kept" in message
    assert "hwprune search --resume abc123" in message
    # No torn half line: the file is cut back to its last whole episode.
    assert journal.path.read_bytes().endswith(b"\n")
    assert [r["episode"] for r in read_records(journal.path)] == [0, 1, 2, 3]
    journal.close()  # never raises
    monkeypatch.undo()
    journal.append({"episode": 4})  # room again: appends go on where they stopped
    assert [r["episode"] for r in read_records(journal.path)] == [0, 1, 2, 3, 4]


def test_a_full_disk_under_the_journal_ends_the_search_resumably(monkeypatch):
    """The journal's disk fills mid-search: one error line naming the disk, the run FAILED
    (never FINISHED), and --resume completes it with every episode logged once."""
    args = ["search", "--agent", "random", "--episodes", "12", "--seed", "5",
            "--experiment", "journal-enospc", "--no-progress"]  # fmt: skip
    _full_disk_after(monkeypatch, 7)
    res = runner.invoke(app, args)
    monkeypatch.undo()
    assert res.exit_code == 1, res.output
    assert "Traceback" not in res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert [line for line in lines if line.startswith("error:")] == lines[-1:], res.output
    assert "cannot write the episode journal" in lines[-1]
    assert "No space left on device (the disk mounted at" in lines[-1]
    run_id = lines[-1].split("hwprune search --resume ")[1].rstrip("`")
    assert mlflow.get_run(run_id).info.status == "FAILED"
    assert [s for s, _ in _episode_metrics(run_id)] == list(range(7))
    res = runner.invoke(app, ["search", "--resume", run_id, "--no-progress"])
    assert res.exit_code == 0, res.output
    assert mlflow.get_run(run_id).info.status == "FINISHED"
    assert [s for s, _ in _episode_metrics(run_id)] == list(range(12))
    journal = list(read_records(state_dir() / run_id / "journal.jsonl"))
    assert [r["episode"] for r in journal] == list(range(12))


def test_a_store_failing_after_the_last_episode_is_one_line_and_resumable(monkeypatch):
    """The SQLite store fills while the summary is logged: MLflow's error (a SQLAlchemy
    one inside) becomes the one-line StoreFailure, and the run is not FINISHED."""
    import sqlite3

    import sqlalchemy.exc

    real_log_metrics = mlflow.log_metrics

    def full(metrics, *args, **kwargs):
        if any(k.startswith("best/") for k in metrics):
            cause = sqlalchemy.exc.OperationalError(
                "INSERT", {}, sqlite3.OperationalError("database or disk is full")
            )
            raise mlflow.exceptions.MlflowException(str(cause)) from cause
        return real_log_metrics(metrics, *args, **kwargs)

    monkeypatch.setattr(mlflow, "log_metrics", full)
    res = runner.invoke(
        app, ["search", "--agent", "random", "--episodes", "6", "--experiment", "store-full",
              "--no-progress"],
    )  # fmt: skip
    monkeypatch.undo()
    assert res.exit_code == 1, res.output
    assert "Traceback" not in res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert [line for line in lines if line.startswith("error:")] == lines[-1:], res.output
    assert lines[-1].startswith("error: the tracking store"), res.output
    assert "database or disk is full" in lines[-1]
    assert "on the full disk mounted at '/" in lines[-1]
    run_id = lines[-1].split("hwprune search --resume ")[1].split("`")[0]
    assert mlflow.get_run(run_id).info.status == "FAILED"
    res = runner.invoke(app, ["search", "--resume", run_id, "--no-progress"])
    assert res.exit_code == 0, res.output
    assert mlflow.get_run(run_id).info.status == "FINISHED"
    assert [s for s, _ in _episode_metrics(run_id)] == list(range(6))


def test_mlflows_store_traceback_is_kept_off_the_terminal(capsys):
    """MLflow logs a store's SQL error with its whole traceback before raising it (86
    lines for a full SQLite disk); the CLI reports it in one line instead."""
    import logging

    from agents.app.commands.errors import configure_logging

    logger = logging.getLogger("mlflow.store.db.utils")
    configure_logging(debug=False)
    try:
        assert not logger.isEnabledFor(logging.ERROR)
        configure_logging(debug=True)  # --debug shows everything
        assert logger.isEnabledFor(logging.ERROR)
    finally:
        configure_logging(debug=False)


REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def tmpfs(tmp_path):
    """``mount(size)`` mounts a tmpfs of ``size`` (e.g. ``"48k"``) and returns it;
    ``resize(path, size)`` changes its size. Skipped where mounting is not permitted."""
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        where = tmp_path / f"tmpfs{len(mounted)}"
        where.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (root in a privileged place): {done.stderr}")
        mounted.append(where)
        return where

    def resize(where: Path, size: str) -> None:
        subprocess.run(
            ["mount", "-o", f"remount,size={size}", str(where)], check=True, capture_output=True
        )

    mount.resize = resize  # type: ignore[attr-defined]
    yield mount
    for where in mounted:  # lazily if this process still holds a file there open
        if subprocess.run(["umount", str(where)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], check=False, capture_output=True)


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    """The CLI of this checkout in a subprocess (output: stdout and stderr together)."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return subprocess.run(
        [sys.executable, "-m", "agents.app.cli", *args],
        env={**os.environ, "PYTHONPATH": path, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=900,
    )


def _every_episode_once(run_id: str, n: int) -> None:
    client = mlflow.tracking.MlflowClient()
    for key in ("episode/reward", "episode/accuracy", "episode/cost_ratio"):
        steps = sorted(m.step for m in client.get_metric_history(run_id, key))
        assert steps == list(range(n)), (key, len(steps))


@pytest.mark.slow
def test_a_200_episode_search_with_its_journal_on_a_full_tmpfs(tmpfs):
    """HWPRUNE_STATE_DIR on a 48 KB tmpfs: the search stops with one error line and a run
    that is not FINISHED; once the tmpfs is enlarged, --resume completes episodes 0..199,
    each recorded once."""
    state = tmpfs("48k")
    out = _cli(
        "search", "--agent", "random", "--episodes", "200", "--experiment", "tmpfs-journal",
        "--no-progress", HWPRUNE_STATE_DIR=str(state),
    )  # fmt: skip
    assert out.returncode != 0, out.stdout
    assert "Traceback" not in out.stdout
    lines = [line for line in out.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, out.stdout
    assert lines[0].startswith("error: cannot write the episode journal"), lines
    assert f"No space left on device (the disk mounted at {str(state)!r}" in lines[0]
    (run_id,) = [p.name for p in state.iterdir()]
    assert mlflow.get_run(run_id).info.status != "FINISHED"
    kept = list(read_records(state / run_id / "journal.jsonl"))
    assert 0 < len(kept) < 200
    tmpfs.resize(state, "4m")
    out = _cli("search", "--resume", run_id, "--no-progress", HWPRUNE_STATE_DIR=str(state))
    assert out.returncode == 0, out.stdout
    assert mlflow.get_run(run_id).info.status == "FINISHED"
    _every_episode_once(run_id, 200)
    journal = list(read_records(state / run_id / "journal.jsonl"))
    assert [r["episode"] for r in journal] == list(range(200))
    assert journal[: len(kept)] == kept


@pytest.mark.slow
def test_a_search_whose_sqlite_store_fills_up_is_one_line_and_resumes(tmpfs, tmp_path):
    """The SQLite store on a tmpfs with almost no room left: one error line (not MLflow's
    SQLAlchemy traceback), a run not FINISHED, and --resume completes it once there is room."""
    from tracking import check_store

    disk = tmpfs("4m")
    uri = f"sqlite:///{disk}/mlflow.db"
    check_store(uri)
    used_kb = sum(p.stat().st_size for p in disk.iterdir()) // 1024
    tmpfs.resize(disk, f"{used_kb + 64}k")
    env = {"MLFLOW_TRACKING_URI": uri, "HWPRUNE_STATE_DIR": str(tmp_path / "state")}
    out = _cli(
        "search", "--agent", "random", "--episodes", "200", "--experiment", "tmpfs-store",
        "--no-progress", **env,
    )  # fmt: skip
    assert out.returncode == 1, out.stdout
    assert "Traceback" not in out.stdout and "sqlalche.me" not in out.stdout
    lines = [line for line in out.stdout.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: the tracking store"), out.stdout
    assert "database or disk is full" in lines[0]
    assert f"on the full disk mounted at {str(disk)!r}" in lines[0]
    run_id = lines[0].split("hwprune search --resume ")[1].split("`")[0]
    tmpfs.resize(disk, "64m")
    client = mlflow.tracking.MlflowClient(uri)
    assert client.get_run(run_id).info.status != "FINISHED"
    out = _cli("search", "--resume", run_id, "--no-progress", **env)
    assert out.returncode == 0, out.stdout
    assert client.get_run(run_id).info.status == "FINISHED"
    for key in ("episode/reward", "episode/accuracy"):
        steps = sorted(m.step for m in client.get_metric_history(run_id, key))
        assert steps == list(range(200)), (key, len(steps))


@pytest.mark.parametrize("cut", ["_keep", "_send"])
def test_catch_up_finishes_the_episode_a_signal_cut_short(tmp_path, monkeypatch, cut):
    """A signal between journaling an episode and sending it: on interruption the
    recorder catches up, so the run holds every episode its journal does."""

    sink = ListSink()
    recorder = EpisodeRecorder(sinks=[sink], journal=EpisodeJournal(tmp_path / "j.jsonl"))
    recorder.record(_info([1, 2], acc=0.5))

    def interrupted(_rec) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(recorder, cut, interrupted)
    with pytest.raises(KeyboardInterrupt):
        recorder.record(_info([2, 2], acc=0.8))
    monkeypatch.undo()
    assert len(recorder.journal.records()) == 2 and sink.episodes == [0]
    recorder.catch_up()
    assert sink.episodes == [0, 1] and recorder.episodes == 2
    assert recorder.best is not None and recorder.best.choice == [2, 2]
    recorder.catch_up()  # nothing left to do
    assert sink.episodes == [0, 1] and recorder.episodes == 2
