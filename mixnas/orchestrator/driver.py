"""The study driver: asks Optuna for trials, runs each as a Ray task, tells results as they finish.

One driver process keeps `workers` trials in flight. It beats a heartbeat into the database so that
`resume` can tell a dead driver's trials (stale: failed and re-queued) from a live one's (left
alone). Several drivers may work on one study at once; Optuna's RDB storage numbers the trials.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from optuna.trial import TrialState

from mixnas.errors import ConfigError, MixnasError
from mixnas.orchestrator.models import (
    DriverRecord,
    StudyRecord,
    TrialRecord,
    TrialWeights,
    utcnow,
)
from mixnas.orchestrator.study import TERMINAL_STATES, StudyHandle

HEARTBEAT_S = float(os.environ.get("MIXNAS_HEARTBEAT_S", "5"))
STALE_AFTER_S = float(os.environ.get("MIXNAS_STALE_AFTER_S", "30"))


@dataclass
class InFlight:
    number: int
    record_id: int
    params: dict[str, Any]
    user_attrs: dict[str, Any]
    arch_hash: str = ""
    started: float = field(default_factory=time.monotonic)


@dataclass
class Counts:
    complete: int = 0
    running: int = 0
    failed: int = 0
    pruned: int = 0
    infeasible: int = 0
    done: int = 0  # trials that count towards the target (failures that will be retried do not)
    front: int = 0


class Driver:
    def __init__(
        self,
        handle: StudyHandle,
        *,
        ray_address: str | None = None,
        workers: int | None = None,
        progress: Any = None,
    ):
        self.handle = handle
        self.config = handle.config
        self.workers = workers or self.config.workers
        self.ray_address = ray_address
        self.progress = progress
        self.driver_id = uuid.uuid4().hex[:16]
        self.inflight: dict[Any, InFlight] = {}
        # trials whose architecture an in-flight trial is training: settled when it finishes
        self.twins: dict[str, list[tuple[Any, TrialRecord]]] = {}
        self.stopping = False
        self.aborting = False
        self._stop_heartbeat = threading.Event()
        self._grammar = None
        self._remote = None
        self._owns_ray = False

    # ---------------------------------------------------------------- lifecycle
    def run(self, *, seed_baselines: bool = False) -> Counts:
        self._grammar = self._load_grammar()
        self._start_ray()
        self._register()
        beat = threading.Thread(target=self._heartbeat, daemon=True, name="mixnas-heartbeat")
        beat.start()
        previous = self._install_signal_handlers()
        try:
            self.recover_stale()
            if seed_baselines:
                self._enqueue_warm_start()
                self._enqueue_baselines()
            return self._loop()
        finally:
            self._stop_heartbeat.set()
            self._unregister()
            self._stop_ray()  # while our SIGINT handler still stands, so shutdown is not torn
            self._restore_signal_handlers(previous)

    def _loop(self) -> Counts:
        import ray

        counts = self.counts()
        self._show(counts, None)
        last_recovery = time.monotonic()
        while True:
            if self.aborting:
                self._abort_inflight()
                break
            counts = self.counts()
            wanted = self.config.n_trials - counts.done - counts.running
            while not self.stopping and len(self.inflight) < self.workers and wanted > 0:
                self._launch()
                wanted -= 1
            if not self.inflight:
                if self.stopping or self.counts().done >= self.config.n_trials:
                    break
                if wanted <= 0:  # other drivers hold the remaining trials: wait for them,
                    time.sleep(0.5)  # taking theirs over should they stop beating
                    if time.monotonic() - last_recovery > HEARTBEAT_S:
                        self.recover_stale()
                        last_recovery = time.monotonic()
                continue
            ready, _ = ray.wait(list(self.inflight), num_returns=1, timeout=0.5)
            for ref in ready:
                self._collect(ref)
            self._check_timeouts()
            self._show(self.counts(), None)
        final = self.counts()
        self._show(final, None)
        with self.handle.sessions() as session, session.begin():
            record = session.get(StudyRecord, self.handle.record_id)
            record.state = "finished" if final.done >= self.config.n_trials else "stopped"
        return final

    # ---------------------------------------------------------------- trials
    def _launch(self) -> None:
        from mixnas.search_space import Architecture
        from mixnas.search_space.sampling import OptunaDecider

        study = self.handle.optuna_study
        trial = study.ask()
        trial.set_user_attr("driver_id", self.driver_id)
        attrs = dict(trial.user_attrs)
        baseline = attrs.get("baseline")
        record = TrialRecord(
            study_id=self.handle.record_id,
            number=trial.number,
            optuna_trial_id=trial._trial_id,
            state="running",
            baseline=baseline,
            driver_id=self.driver_id,
            attempt=int(attrs.get("attempt", 0)),
            retry_of=attrs.get("retry_of"),
        )
        try:
            if "arch_json" in attrs:
                arch = Architecture.from_json(attrs["arch_json"])
            else:
                arch = self._grammar.sample(OptunaDecider(trial))
            record.arch_json = arch.canonical_json()
            record.arch_hash = arch.hash
            violations = [] if baseline else self._grammar.check_constraints(arch)
        except Exception as exc:  # a grammar that cannot derive a model fails this trial only
            record.params = dict(trial.params)
            self._finish_without_training(trial, record, "failed", f"sampling error: {exc}")
            return
        record.params = dict(trial.params)
        if violations:
            reason = "infeasible: " + "; ".join(violations)
            self._finish_without_training(trial, record, "infeasible", reason)
            return
        if self.config.reuse_results and self._reuse_earlier_result(trial, record):
            return
        with self.handle.sessions() as session, session.begin():
            session.add(record)  # running: counted, and recovered should this driver die
        twin = any(info.arch_hash == record.arch_hash for info in self.inflight.values())
        if self.config.reuse_results and twin:  # wait for its result rather than train it twice
            self.twins.setdefault(record.arch_hash, []).append((trial, record))
            return
        self._train(trial, record)

    def _train(self, trial, record: TrialRecord) -> None:
        """Send a trial (its row written, state running) to a Ray worker."""
        attrs = dict(trial.user_attrs)
        payload = {
            "storage": self.config.storage,
            "study_id": self.handle.record_id,
            "trial_id": record.id,
            "number": trial.number,
            "arch_json": record.arch_json,
            "task": self.config.task,
            "budget": {**self.config.budget, "rungs": self.config.pruning.rungs},
            "train": self.config.train,
            "profile": self.config.profile,
            "objectives": [o.to_dict() for o in self.config.objectives],
            "pruning": {
                "enabled": self.config.pruning.enabled,
                "margin": self.config.pruning.margin,
                "min_trials": self.config.pruning.min_trials,
            },
            "seed": self.config.seed,
            "keep_weights": self.config.keep_weights != "none",
        }
        ref = self._remote.remote(payload)
        self.inflight[ref] = InFlight(
            trial.number, record.id, dict(trial.params), attrs, arch_hash=record.arch_hash
        )

    def _settle_twins(self, info: InFlight, fail_with: dict[str, Any] | None = None) -> None:
        """Finish the trials that waited on `info`'s architecture: with its result when it
        completed, else by training them, or with `fail_with` (the driver is aborting)."""
        for trial, record in self.twins.pop(info.arch_hash, []):
            if fail_with is not None:
                twin = InFlight(trial.number, record.id, dict(trial.params), dict(trial.user_attrs))
                self._record_result(twin, fail_with)
            elif not self._reuse_earlier_result(trial, record):
                self._train(trial, record)

    def _reuse_earlier_result(self, trial, record: TrialRecord) -> bool:
        """Complete `trial` with the result of an earlier trial of the same architecture, if the
        study has one. Every trial of a study trains with the same task, budget and seed, so
        training it again would repeat that run; samplers often re-propose designs they like."""
        with self.handle.sessions() as session:
            earlier = session.scalars(
                sa.select(TrialRecord)
                .where(
                    TrialRecord.study_id == record.study_id,
                    TrialRecord.arch_hash == record.arch_hash,
                    TrialRecord.state == "complete",
                    TrialRecord.duplicate_of.is_(None),
                )
                .order_by(TrialRecord.number)
                .limit(1)
            ).first()
        if earlier is None:
            return False
        record.state = "complete"
        record.values = dict(earlier.values)
        record.metrics = earlier.metrics
        record.profile = earlier.profile
        record.duplicate_of = earlier.number
        record.compute_seconds = 0.0
        record.finished_at = utcnow()
        with self.handle.sessions() as session, session.begin():
            session.add(record)
        values = [float(earlier.values[n]) for n in self.handle.objective_names()]
        self.handle.optuna_study.tell(trial, values, skip_if_finished=True)
        message = f"trial {trial.number} complete: same architecture as trial {earlier.number}"
        self._show(self.counts(), message + ", result reused")
        return True

    def _finish_without_training(self, trial, record: TrialRecord, state: str, reason: str):
        record.state = state
        record.failure_reason = reason
        record.finished_at = utcnow()
        with self.handle.sessions() as session, session.begin():
            session.add(record)
        self.handle.optuna_study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        trial_state = "infeasible" if state == "infeasible" else "failed"
        self._show(self.counts(), f"trial {trial.number} {trial_state}: {reason}")

    def _collect(self, ref) -> None:
        import ray

        info = self.inflight.pop(ref)
        try:
            result = ray.get(ref)
        except ray.exceptions.TaskCancelledError:
            result = {"status": "failed", "reason": "cancelled", "retry": False}
        except ray.exceptions.RayError as exc:  # the worker process died or the node went away
            reason = f"worker died: {_first_line(exc)}"
            result = {"status": "failed", "reason": reason, "retry": True}
        self._record_result(info, result)
        self._settle_twins(info)

    def _record_result(self, info: InFlight, result: dict[str, Any]) -> None:
        """Write a trial's outcome, then tell Optuna. The row is updated only while it is still
        `running`: another driver that took the trial over as stale (and re-queued it) wins."""
        study = self.handle.optuna_study
        status = result["status"]
        values = None
        if status == "complete":
            values, missing = self._objective_values(result)
            if missing:
                status = "failed"
                result = {**result, "reason": f"objective(s) not measured: {', '.join(missing)}"}
        retry = None
        if status == "failed" and result.get("retry"):
            attempt = int(info.user_attrs.get("attempt", 0))
            carried = {k: v for k, v in info.user_attrs.items() if k in ("baseline", "arch_json")}
            retry = self._retry_attrs(info.number, attempt, carried)
        fields: dict[str, Any] = {
            "state": status,
            "finished_at": utcnow(),
            "compute_seconds": result.get("seconds"),
            "metrics": result.get("metrics"),
            "failure_reason": result.get("reason"),
            "retried": retry is not None,
        }
        if result.get("worker"):
            fields["worker"] = result["worker"]
        if result.get("profile"):
            fields["profile"] = result["profile"]
        if values is not None:
            fields["values"] = dict(zip(self.handle.objective_names(), values))
        if status == "pruned":
            fields["saved_steps"] = int(result["budget_steps"] - result["pruned_at_step"])
        with self.handle.sessions() as session, session.begin():
            owned = session.execute(
                sa.update(TrialRecord)
                .where(TrialRecord.id == info.record_id, TrialRecord.state == "running")
                .values(**fields)
            ).rowcount
            if owned and result.get("weights") and status == "complete":
                session.merge(
                    TrialWeights(
                        trial_id=info.record_id,
                        vocab_size=int(result["vocab_size"]),
                        data=result["weights"],
                    )
                )
        if not owned:
            message = f"trial {info.number}: taken over as stale by another driver; result dropped"
            self._show(self.counts(), message)
            return
        if retry is not None:
            study.enqueue_trial(info.params, user_attrs=retry)
        if status == "complete":
            study.tell(info.number, values, skip_if_finished=True)
        elif status == "pruned":
            study.tell(info.number, state=TrialState.PRUNED, skip_if_finished=True)
        else:
            study.tell(info.number, state=TrialState.FAIL, skip_if_finished=True)
        if status == "complete" and self.config.keep_weights == "pareto":
            self._drop_weights_off_front()
        message = f"trial {info.number} {status}"
        if status == "failed":
            message += f": {result.get('reason')}" + (" (retrying)" if retry else "")
        self._show(self.counts(), message)

    def _objective_values(self, result: dict[str, Any]) -> tuple[list[float], list[str]]:
        measured = {**(result.get("profile") or {}), **(result.get("metrics") or {})}
        names = self.handle.objective_names()
        missing = [n for n in names if n not in measured]
        return [float(measured[n]) for n in names if n in measured], missing

    def _retry_attrs(
        self, number: int, attempt: int, carried: dict[str, Any]
    ) -> dict[str, Any] | None:
        """User attributes that re-queue trial `number` (its parameters, plus `carried`: a
        baseline's name and architecture), or None once its retries are used up."""
        if attempt >= self.config.max_retries:
            return None
        return {**carried, "retry_of": number, "attempt": attempt + 1}

    def _check_timeouts(self) -> None:
        import ray

        limit = self.config.trial_timeout_s
        if not limit:
            return
        now = time.monotonic()
        for ref, info in list(self.inflight.items()):
            if now - info.started > limit:
                ray.cancel(ref, force=True)
                del self.inflight[ref]
                reason = f"timed out after {limit:g} s"
                self._record_result(info, {"status": "failed", "reason": reason, "retry": False})
                self._settle_twins(info)

    def _abort_inflight(self) -> None:
        import ray

        for ref, info in list(self.inflight.items()):
            ray.cancel(ref, force=True)
            del self.inflight[ref]
            reason = "interrupted: the driver was stopped by a second Ctrl-C"
            result = {"status": "failed", "reason": reason, "retry": True}
            self._record_result(info, result)
            self._settle_twins(info, fail_with=result)

    def _drop_weights_off_front(self) -> None:
        front = {t.number for t in self.handle.optuna_study.best_trials}
        with self.handle.sessions() as session, session.begin():
            off_front = sa.select(TrialRecord.id).where(
                TrialRecord.study_id == self.handle.record_id, TrialRecord.number.not_in(front)
            )
            session.execute(sa.delete(TrialWeights).where(TrialWeights.trial_id.in_(off_front)))

    # ---------------------------------------------------------------- baselines and recovery
    def _baselines(self) -> list[tuple[str, Any]]:
        """(name, Architecture) of every baseline the study file asks for."""
        from mixnas.search_space import BASELINES, Architecture

        out = []
        for item in self.config.baselines:
            if item == "all":
                out += list(BASELINES.items())
            elif isinstance(item, str):
                out.append((item, BASELINES[item]))
            else:
                try:
                    arch = Architecture.from_dict(item)
                except (ValueError, KeyError, TypeError) as exc:
                    raise ConfigError(f"{self.config.source}: baselines: {exc}") from None
                out.append((arch.name or f"baseline-{arch.hash[:8]}", arch))
        return out

    def _enqueue_baselines(self) -> None:
        for name, arch in self._baselines():
            self.handle.optuna_study.enqueue_trial(
                {}, user_attrs={"baseline": name, "arch_json": arch.to_json()}
            )

    def _enqueue_warm_start(self) -> None:
        """The warm-start studies' fronts, first, as grammar decisions: trained again on this
        study's task, and learnt from by the sampler like any trial (warm_start.py)."""
        from mixnas.orchestrator.warm_start import front_to_enqueue

        baselines = {arch.hash for _, arch in self._baselines()}
        for source, decisions in front_to_enqueue(self._grammar, self.handle.warm, baselines):
            self.handle.optuna_study.enqueue_trial(decisions, user_attrs={"warm_start": source})

    def recover_stale(self) -> int:
        """Fail trials whose driver stopped beating, re-queueing those with retries left (a
        design that kills its driver every time must not loop forever); returns how many.

        Each stale row is claimed by a conditional UPDATE, so two drivers recovering at once never
        queue the same parameters twice, and a result that lands late is dropped (see
        `_record_result`) instead of overwriting the failure.
        """
        cutoff = utcnow() - timedelta(seconds=STALE_AFTER_S)
        with self.handle.sessions() as session:
            live = set(
                session.scalars(
                    sa.select(DriverRecord.id).where(
                        DriverRecord.study_id == self.handle.record_id,
                        DriverRecord.stopped_at.is_(None),
                        DriverRecord.heartbeat_at >= cutoff,
                    )
                )
            )
            running = session.scalars(
                sa.select(TrialRecord).where(
                    TrialRecord.study_id == self.handle.record_id,
                    TrialRecord.state == "running",
                )
            ).all()
        study = self.handle.optuna_study
        recovered = 0
        for trial in running:
            if trial.driver_id in live:
                continue
            carried = {}
            if trial.baseline:  # a baseline is re-queued by its architecture, not parameters
                carried = {"baseline": trial.baseline, "arch_json": trial.arch_json}
            retry = self._retry_attrs(trial.number, trial.attempt, carried)
            reason = f"stale: driver {trial.driver_id} stopped beating"
            with self.handle.sessions() as session, session.begin():
                claimed = session.execute(
                    sa.update(TrialRecord)
                    .where(TrialRecord.id == trial.id, TrialRecord.state == "running")
                    .values(
                        state="failed",
                        failure_reason=reason if retry else f"{reason} (retries used up)",
                        finished_at=utcnow(),
                        retried=retry is not None,
                    )
                ).rowcount
            if not claimed:
                continue  # another driver recovered it first
            if retry is not None:
                study.enqueue_trial(dict(trial.params or {}), user_attrs=retry)
            study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
            recovered += 1
        self._settle_orphans(live)
        return recovered

    def _settle_orphans(self, live: set[str]) -> None:
        """Finish Optuna trials left RUNNING by dead drivers: with the outcome our table already
        holds (the driver died between writing it and telling Optuna), else as failed.

        A trial with no owner yet is being set up by some driver right now (between `ask` and
        `set_user_attr`) unless it is older than the stale cutoff."""
        study = self.handle.optuna_study
        local_cutoff = datetime.now() - timedelta(seconds=STALE_AFTER_S)  # Optuna's clock is local
        orphans = []
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            owner = trial.user_attrs.get("driver_id")
            if owner in live or owner == self.driver_id:
                continue
            if owner is None and trial.datetime_start and trial.datetime_start > local_cutoff:
                continue
            orphans.append(trial.number)
        if not orphans:
            return
        with self.handle.sessions() as session:
            rows = dict(
                session.execute(
                    sa.select(TrialRecord.number, TrialRecord).where(
                        TrialRecord.study_id == self.handle.record_id,
                        TrialRecord.number.in_(orphans),
                    )
                ).all()
            )
        names = self.handle.objective_names()
        for number in orphans:
            row = rows.get(number)
            if row is not None and row.state == "complete" and row.values:
                study.tell(number, [row.values[n] for n in names], skip_if_finished=True)
            elif row is not None and row.state == "pruned":
                study.tell(number, state=TrialState.PRUNED, skip_if_finished=True)
            else:
                study.tell(number, state=TrialState.FAIL, skip_if_finished=True)

    # ---------------------------------------------------------------- bookkeeping
    def counts(self) -> Counts:
        with self.handle.sessions() as session:
            rows = session.execute(
                sa.select(TrialRecord.state, TrialRecord.retried, sa.func.count())
                .where(TrialRecord.study_id == self.handle.record_id)
                .group_by(TrialRecord.state, TrialRecord.retried)
            ).all()
        counts = Counts()
        for state, retried, n in rows:
            setattr(counts, state, getattr(counts, state) + n)
            if state in TERMINAL_STATES or (state == "failed" and not retried):
                counts.done += n
        return counts

    def _show(self, counts: Counts, message: str | None) -> None:
        if self.progress is None:
            return
        counts.front = len(self.handle.optuna_study.best_trials) if counts.complete else 0
        self.progress.update(counts, self.config.n_trials, message)

    def _load_grammar(self):
        from mixnas.search_space.grammar import Grammar

        return Grammar.load(self.config.search_space)

    def _start_ray(self) -> None:
        """Join the cluster at `ray_address`, or start a private local instance: never a cluster
        found by chance (`ray.init()` alone would join the last `ray start` on this machine)."""
        import ray

        from mixnas.orchestrator.worker import run_trial

        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            common = {"logging_level": "ERROR", "log_to_driver": False}
            if self.ray_address:
                check_ray_address(self.ray_address)
                try:
                    ray.init(address=self.ray_address, **common)
                except (ConnectionError, RuntimeError, ray.exceptions.RayError) as exc:
                    raise MixnasError(
                        f"cannot join the Ray cluster at '{self.ray_address}': {_first_line(exc)}"
                        " (if the cluster uses token authentication, set RAY_AUTH_MODE=token and "
                        "give this machine the cluster's token)"
                    ) from None
            else:
                ray.init(address="local", num_cpus=self.workers, include_dashboard=False, **common)
        self._remote = ray.remote(max_retries=0, **trial_resources(ray.cluster_resources()))(
            run_trial
        )

    def _stop_ray(self) -> None:
        import ray

        if self._owns_ray and ray.is_initialized():
            ray.shutdown()

    def _register(self) -> None:
        with self.handle.sessions() as session, session.begin():
            session.add(
                DriverRecord(
                    id=self.driver_id,
                    study_id=self.handle.record_id,
                    host=socket.gethostname(),
                    pid=os.getpid(),
                )
            )
            record = session.get(StudyRecord, self.handle.record_id)
            record.state = "running"

    def _unregister(self) -> None:
        with self.handle.sessions() as session, session.begin():
            session.execute(
                sa.update(DriverRecord)
                .where(DriverRecord.id == self.driver_id)
                .values(stopped_at=utcnow())
            )

    def _heartbeat(self) -> None:
        while not self._stop_heartbeat.wait(HEARTBEAT_S):
            try:
                with self.handle.sessions() as session, session.begin():
                    session.execute(
                        sa.update(DriverRecord)
                        .where(DriverRecord.id == self.driver_id)
                        .values(heartbeat_at=utcnow())
                    )
            except sa.exc.OperationalError:
                continue  # a busy database delays one beat; the next one will land

    def _install_signal_handlers(self):
        if threading.current_thread() is not threading.main_thread():
            return None

        def on_sigint(_signum, _frame):
            if not self.stopping:
                self.stopping = True
                self._note(
                    "Ctrl-C: no new trials; waiting for the trials in flight "
                    "(Ctrl-C again to stop them now)"
                )
            else:
                self.aborting = True
                self._note("Ctrl-C again: stopping the trials in flight; they will be re-run")

        return signal.signal(signal.SIGINT, on_sigint)

    @staticmethod
    def _restore_signal_handlers(previous) -> None:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)

    def _note(self, message: str) -> None:
        """Tell the user something at once: in the live display, or on stderr without one."""
        if self.progress is not None:
            self.progress.note(message)
        else:
            print(f"mixnas: {message}", file=sys.stderr, flush=True)


def trial_resources(cluster: dict[str, float]) -> dict[str, float]:
    """What each trial asks Ray for: one CPU, and one GPU when the cluster has any."""
    return {"num_cpus": 1, "num_gpus": 1 if cluster.get("GPU", 0) > 0 else 0}


def check_ray_address(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast on a HOST:PORT nothing listens on (Ray itself retries for many minutes)."""
    if address in ("auto", "local") or "://" in address:
        return
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise MixnasError(f"bad Ray address '{address}': expected HOST:PORT or 'auto'")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise MixnasError(f"cannot reach the Ray cluster at '{address}': {exc}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
