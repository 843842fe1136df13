"""Drive real `mixnas` processes, kill them the hard way, and check what the database holds after.

Every driver is started in a session of its own, so that killing the session takes its local Ray
(GCS, raylet, workers: Ray gives workers their own process group, but not their own session) with
it and nothing leaks into later tests.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import optuna
import sqlalchemy as sa

REPO = Path(__file__).resolve().parents[2]
SPACE = Path(__file__).with_name("space.yaml")
HEARTBEAT_S = 0.3  # driver heartbeats in these tests
STALE_AFTER_S = 3.0  # a driver silent this long is dead (ample for a loaded 2-core box)

STUDY = """\
name: {name}
search_space: {space}
task: {{name: mqar, vocab_size: 16, seq_len: 32, num_kv_pairs: 4}}
budget: {{steps: {steps}}}
train: {{lr: 3.0e-3, batch_size: 16, eval_batch_size: 64}}
objectives:
  - {{name: accuracy, direction: maximize}}
  - {{name: non_embedding_params, direction: minimize}}
profile: {{latency: false, context_length: 64}}
n_trials: {n_trials}
workers: {workers}
max_retries: {max_retries}
seed: {seed}
baselines: []
pruning: {{enabled: false}}
"""


def write_study(directory: Path, name: str, *, n_trials: int, workers: int, steps: int = 30,
                max_retries: int = 1, seed: int = 1) -> Path:
    path = directory / f"{name}.yaml"
    path.write_text(STUDY.format(name=name, space=SPACE, steps=steps, n_trials=n_trials,
                                 workers=workers, max_retries=max_retries, seed=seed))
    return path


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(CI="true", MIXNAS_HEARTBEAT_S=str(HEARTBEAT_S),
               MIXNAS_STALE_AFTER_S=str(STALE_AFTER_S))
    env.update(extra)
    return env


class Mixnas:
    """One `python -m mixnas.cli ...` process in its own session, output kept in files."""

    def __init__(self, log_dir: Path, *args: str, **env: str):
        self.args = args
        log_dir.mkdir(parents=True, exist_ok=True)
        stamp = f"{time.monotonic_ns()}"
        self.out_path = log_dir / f"{stamp}.out"
        self.err_path = log_dir / f"{stamp}.err"
        with open(self.out_path, "w") as out, open(self.err_path, "w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mixnas.cli", *args], cwd=REPO, env=environment(**env),
                stdout=out, stderr=err, start_new_session=True,
            )
        self.pid = self.proc.pid

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"mixnas {' '.join(self.args)} ran past {timeout} s:\n"
                                 f"{self.stdout()}\n{self.stderr()}") from None

    def interrupt(self) -> None:
        """Ctrl-C as a terminal sends it: to the whole foreground process group."""
        os.killpg(self.pid, signal.SIGINT)

    def kill(self) -> None:
        """SIGKILL the driver, then everything left in its session (its local Ray)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        kill_session(self.pid)

    def stdout(self) -> str:
        return self.out_path.read_text()

    def stderr(self) -> str:
        return self.err_path.read_text()

    def check(self, timeout: float, expect: int = 0) -> None:
        code = self.wait(timeout)
        assert code == expect, (f"mixnas {' '.join(self.args)} exited {code}:\n"
                                f"{self.stdout()[-3000:]}\n{self.stderr()[-3000:]}")


def session_members(sid: int) -> list[int]:
    """Live (non-zombie) processes of a session, read from /proc."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[3]) == sid and fields[0] not in ("Z", "X"):
            members.append(int(entry))
    return members


def session_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2:].split()[3])


def kill_session(sid: int, timeout: float = 20.0) -> None:
    """SIGKILL every process of session `sid` until none is left (Ray may respawn workers)."""
    deadline = time.monotonic() + timeout
    while members := session_members(sid):
        for pid in members:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            raise AssertionError(f"processes of session {sid} survive SIGKILL: {members}")
        time.sleep(0.1)


def wait_until(what: str, predicate, timeout: float, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@contextlib.contextmanager
def ray_head_process(num_cpus: int, num_gpus: int):
    """`ray start --head` in a session and temp dir of its own, declaring `num_gpus` GPUs whether
    or not the machine has them (Ray then schedules fractional GPUs for real); yields its
    address and session. On exit it kills exactly that session (never `ray stop`, which would
    stop every Ray on the machine). Drivers join it with `ray_client_env(address)`."""
    ray_cli = shutil.which("ray")
    if ray_cli is None:
        import pytest

        pytest.skip("the `ray` command is not installed")
    port = free_port()
    temp_dir = tempfile.mkdtemp(prefix="mxr")  # short: Ray puts unix sockets in it
    log = open(f"{temp_dir}/head.log", "w")  # noqa: SIM115 - closed below
    path = os.environ.get("PYTHONPATH")  # its workers import this checkout
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{path}" if path else str(REPO)}
    proc = subprocess.Popen(
        [ray_cli, "start", "--head", "--block", f"--port={port}", f"--num-cpus={num_cpus}",
         f"--num-gpus={num_gpus}", "--include-dashboard=false", f"--temp-dir={temp_dir}",
         "--disable-usage-stats"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                log.flush()
                raise RuntimeError(f"ray start failed:\n{Path(log.name).read_text()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the Ray head did not come up in 90 s") from None
                time.sleep(0.2)
        yield SimpleNamespace(address=f"127.0.0.1:{port}", session=proc.pid)
    finally:
        proc.kill()
        proc.wait()
        kill_session(proc.pid)
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)


def ray_client_env(address: str) -> dict[str, str]:
    """What a driver needs to join a test head: its address (read by `--ray-address auto`)
    and token authentication, which `ray start --head` turns on by default."""
    return {"RAY_ADDRESS": address, "RAY_AUTH_MODE": "token"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


# --------------------------------------------------------------------------- reading the database
class Reader:
    """Polls a study database as a bystander would; for SQLite, through the dashboard's read-only
    connection, so every poll also shows that a reader gets through while a study writes."""

    def __init__(self, url: str):
        self.url = url
        self.engine = None

    def _engine(self):
        if self.engine is None:
            if self.url.startswith("sqlite"):
                from mixnas.storage.engine import read_only_engine

                if not Path(self.url.removeprefix("sqlite:///")).exists():
                    return None
                self.engine = read_only_engine(self.url)
            else:
                self.engine = sa.create_engine(self.url)
        return self.engine

    def trials(self) -> list[SimpleNamespace]:
        engine = self._engine()
        if engine is None:
            return []
        try:
            with engine.connect() as conn:
                rows = conn.execute(sa.text("SELECT * FROM mixnas_trials ORDER BY number")).all()
            return [_trial(row) for row in rows]
        except sa.exc.OperationalError as exc:  # the tables are not there yet
            if "no such table" in str(exc):
                return []
            raise
        except sa.exc.ProgrammingError:
            return []

    def drivers(self) -> list[sa.Row]:
        with self._engine().connect() as conn:
            return conn.execute(sa.text("SELECT * FROM mixnas_drivers")).all()

    def running_on_worker(self, driver_id: str | None = None) -> SimpleNamespace | None:
        """A running trial whose worker has started (it writes host:pid first)."""
        for row in self.trials():
            if row.state == "running" and row.worker and driver_id in (None, row.driver_id):
                return row
        return None

    def complete(self) -> dict[int, dict]:
        return {r.number: r.values for r in self.trials() if r.state == "complete"}

    def wait_stale(self, driver_id: str) -> None:
        """Until the (dead) driver's last heartbeat is older than the stale cutoff."""
        def stale():
            beat = next(d.heartbeat_at for d in self.drivers() if d.id == driver_id)
            beat = beat if isinstance(beat, datetime) else datetime.fromisoformat(beat)
            return (utcnow() - beat).total_seconds() > STALE_AFTER_S + 0.2
        wait_until("the killed driver to go stale", stale, timeout=STALE_AFTER_S + 5)

    def close(self) -> None:
        if self.engine is not None:
            self.engine.dispose()


def _trial(row: sa.Row) -> SimpleNamespace:
    """A trial row with its JSON columns decoded (a plain SELECT returns them as text)."""
    trial = SimpleNamespace(**row._asdict())
    for key in ("params", "values", "metrics", "profile"):
        value = getattr(trial, key)
        setattr(trial, key, json.loads(value) if isinstance(value, str) else value)
    for key in ("started_at", "finished_at"):
        value = getattr(trial, key)
        setattr(trial, key, datetime.fromisoformat(value) if isinstance(value, str) else value)
    return trial


def worker_pid(row) -> int:
    return int(row.worker.rsplit(":", 1)[1])


def done_count(rows) -> int:
    """Trials that count towards the target (as the driver counts them)."""
    return sum(1 for r in rows if r.state in ("complete", "pruned", "infeasible")
               or (r.state == "failed" and not r.retried))


def check_study(url: str, name: str, target: int) -> list[SimpleNamespace]:
    """The invariants every study must keep, whatever was killed on the way:
    nothing left running (ours or Optuna's), one Optuna trial per number, every COMPLETE Optuna
    trial matched by exactly one complete row with the same values and vice versa, every retried
    failure followed by its retry, and the target reached."""
    reader = Reader(url)
    rows = reader.trials()
    reader.close()
    study = optuna.load_study(study_name=name, storage=url)
    trials = study.get_trials(deepcopy=False)
    names = list(study.metric_names)
    assert [t.number for t in trials] == list(range(len(trials)))
    assert not [r.number for r in rows if r.state == "running"], "a trial was left running"
    assert not [t.number for t in trials if t.state == optuna.trial.TrialState.RUNNING]
    numbers = [r.number for r in rows]
    assert len(numbers) == len(set(numbers)), "duplicate trial numbers"
    complete_rows = {r.number: r.values for r in rows if r.state == "complete"}
    complete_optuna = {t.number: dict(zip(names, t.values)) for t in trials
                       if t.state == optuna.trial.TrialState.COMPLETE}
    assert complete_rows == complete_optuna
    retries = {r.retry_of for r in rows if r.retry_of is not None}
    retries |= {t.user_attrs.get("retry_of") for t in trials
                if t.state == optuna.trial.TrialState.WAITING}
    lost = [r.number for r in rows if r.state == "failed" and r.retried and r.number not in retries]
    assert not lost, f"retried failures without a retry: {lost}"
    assert done_count(rows) >= target, [(r.number, r.state, r.failure_reason) for r in rows]
    return rows
