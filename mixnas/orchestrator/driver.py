"""The study driver: the trial loop. Ask Optuna for trials, run each on Ray, tell results as they
finish.

One driver process keeps `workers` trials in flight. Heartbeats and stale recovery live in
heartbeat.py, Ray in cluster.py, the worker's payload and result in trials.py, every database
access behind mixnas.storage. Several drivers may work on one study at once; Optuna's RDB storage
numbers the trials.

A design is trained once per study (`reuse_results`), across drivers too: a driver claims a
design in the database before training it (`claim_design`), and a trial of a design that another
driver has in flight waits for that result instead of training it again. A claim is dropped once
its result is written (result first, so a waiter never finds neither), or taken over when the
driver that holds it stops beating.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from optuna.trial import TrialState

from mixnas.errors import ConfigError
from mixnas.orchestrator import heartbeat
from mixnas.orchestrator.cluster import RayRuntime
from mixnas.orchestrator.study import StudyHandle
from mixnas.orchestrator.trials import TrialPayload, TrialResult, retry_attrs
from mixnas.search_space.plugins import with_installed
from mixnas.storage import TrialCounts, TrialRecord, utcnow


@dataclass
class InFlight:
    """A trial being trained: what the driver needs when its result comes back."""

    number: int
    record_id: int
    params: dict[str, Any]
    user_attrs: dict[str, Any]
    arch_hash: str = ""
    started: float = field(default_factory=time.monotonic)


@dataclass
class Counts(TrialCounts):
    """Trial counts, plus the size of the Pareto front, as the live display shows them."""

    front: int = 0


class Driver:
    """Runs a study's trials until it has `n_trials` done (or the user stops it).

    Args:
        handle: The study (`create_study` or `load_study`).
        ray_address: A Ray cluster to join (HOST:PORT or 'auto'); None starts a private local Ray.
        workers: Trials in flight at once (default: the study config's `workers`, else as many
            as the cluster's resources allow for the study's `resources`).
        progress: A live display (`progress.LiveProgress`) or None for none.
    """

    def __init__(self, handle: StudyHandle, *, ray_address: str | None = None,
                 workers: int | None = None, progress: Any = None):
        self.handle = handle
        self.config = handle.config
        self.workers = workers or self.config.workers
        self.progress = progress
        self.driver_id = uuid.uuid4().hex[:16]
        self.ray = RayRuntime(ray_address, self.workers, self.config.resources)
        self._noted_cpu_fallback = False
        self.inflight: dict[Any, InFlight] = {}
        # trials whose architecture an in-flight trial is training: settled when it finishes
        self.twins: dict[str, list[tuple[Any, TrialRecord]]] = {}
        # trials whose architecture another driver is training: polled until its result lands
        self.waiting: dict[str, list[tuple[Any, TrialRecord]]] = {}
        self._last_poll = 0.0
        self.stopping = False
        self.aborting = False
        self._grammar = None

    def run(self, *, seed_baselines: bool = False) -> Counts:
        """Run trials until the target is done or the driver is stopped.

        Args:
            seed_baselines: Queue the study's baselines first (a new study; not on resume).

        Returns:
            The final trial counts.

        Raises:
            GrammarError: The search space cannot be read.
            MixnasError: The Ray cluster cannot be joined.
            StorageError: The database cannot be reached.
        """
        from mixnas.search_space.grammar import Grammar

        self._grammar = Grammar.load(self.config.search_space)
        self.ray.start()
        self.workers = self.ray.workers
        beat = heartbeat.Heartbeat(self.handle, self.driver_id)
        beat.start()
        previous = self._install_signal_handlers()
        try:
            self.recover_stale()
            if seed_baselines:
                self._enqueue_warm_start()
                self._enqueue_baselines()
            return self._loop()
        finally:
            beat.stop()
            self.ray.stop()  # while our SIGINT handler still stands, so shutdown is not torn
            self._restore_signal_handlers(previous)

    def _loop(self) -> Counts:
        self._show(None)
        last_recovery = time.monotonic()
        while not self.aborting:
            self._poll_waiting()
            counts = self.counts()
            wanted = self.config.n_trials - counts.done - counts.running
            while not self.stopping and len(self.inflight) < self.workers and wanted > 0:
                self.launch()
                wanted -= 1
            if not self.inflight:
                if not self.waiting and (self.stopping
                                         or self.counts().done >= self.config.n_trials):
                    break
                if wanted <= 0:  # other drivers hold the remaining trials: wait for them,
                    time.sleep(0.5)  # taking theirs over should they stop beating
                    if time.monotonic() - last_recovery > heartbeat.HEARTBEAT_S:
                        self.recover_stale()
                        last_recovery = time.monotonic()
                continue
            for ref in self.ray.ready(list(self.inflight), timeout_s=0.5):
                self._collect(ref)
            self._check_timeouts()
            self._show(None)
        if self.aborting:
            self._abort_inflight()
        final = self._show(None)
        state = "finished" if final.done >= self.config.n_trials else "stopped"
        self.handle.storage.set_study_state(self.handle.record_id, state)
        return final

    # ---------------------------------------------------------------- trials
    def launch(self) -> None:
        """Ask Optuna for a trial, derive its architecture and start it (or settle it at once:
        infeasible, a sampling error, or a design whose result the study already has)."""
        from mixnas.search_space import Architecture
        from mixnas.search_space.sampling import OptunaDecider

        trial = self.handle.optuna_study.ask()
        trial.set_user_attr("driver_id", self.driver_id)
        attrs = dict(trial.user_attrs)
        baseline = attrs.get("baseline")
        record = TrialRecord(
            study_id=self.handle.record_id, number=trial.number, state="running",
            optuna_trial_id=self.handle.optuna_trial_id(trial.number), baseline=baseline,
            driver_id=self.driver_id, attempt=int(attrs.get("attempt", 0)),
            retry_of=attrs.get("retry_of"), parent_trial=attrs.get("parent_trial"),
        )
        try:
            if "arch_json" in attrs:
                arch = Architecture.from_json(attrs["arch_json"])
            else:
                arch = self._grammar.sample(OptunaDecider(trial))
            record.arch_json, record.arch_hash = arch.canonical_json(), arch.hash
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
        self.handle.storage.add_trial(record)  # running: counted, and recovered should we die
        if not self.config.reuse_results:
            self._train(trial, record)
        elif any(info.arch_hash == record.arch_hash for info in self.inflight.values()):
            self.twins.setdefault(record.arch_hash, []).append((trial, record))  # ours in flight
        elif record.arch_hash in self.waiting:
            self.waiting[record.arch_hash].append((trial, record))
        else:
            outcome = self._claim(trial, record)
            if outcome == "train":
                self._train(trial, record)
            elif outcome == "wait":  # another driver is training it
                self.waiting[record.arch_hash] = [(trial, record)]
                self._show(f"trial {trial.number}: same architecture as a trial of another "
                           "driver in flight; waiting for its result")

    # ---------------------------------------------------------------- design claims
    def _claim(self, trial, record: TrialRecord, holder: str | None = None) -> str:
        """Claim `record`'s design for it, taking the claim over from `holder` (a driver that
        stopped beating) if given.

        Returns:
            "train" (the claim is ours), "wait" (another driver holds it) or "done" (the design
            got a result meanwhile, which completed the trial).
        """
        storage, study_id = self.handle.storage, self.handle.record_id
        if holder is not None:
            storage.release_design(study_id, record.arch_hash, holder=holder)
        if not storage.claim_design(study_id, record.arch_hash, record.id, self.driver_id):
            return "wait"
        if storage.get_first_result(study_id, record.arch_hash) is not None:
            storage.release_design(study_id, record.arch_hash, holder=self.driver_id)
            self._reuse_earlier_result(trial, record)
            return "done"
        return "train"

    def _release(self, arch_hash: str) -> None:
        """Drop our claim on a design once none of our trials in flight trains it."""
        if self.config.reuse_results and arch_hash and not any(
                info.arch_hash == arch_hash for info in self.inflight.values()):
            self.handle.storage.release_design(self.handle.record_id, arch_hash,
                                               holder=self.driver_id)

    def _poll_waiting(self, every_s: float = 0.25) -> None:
        """Settle the trials waiting on another driver's design: with its result once written;
        else, when the claim is gone or its driver stopped beating, by training it here."""
        if not self.waiting or time.monotonic() - self._last_poll < every_s:
            return
        self._last_poll = time.monotonic()
        storage, study_id = self.handle.storage, self.handle.record_id
        live = None
        for arch_hash, waiters in list(self.waiting.items()):
            if storage.get_first_result(study_id, arch_hash) is not None:
                del self.waiting[arch_hash]
                for trial, record in waiters:
                    self._reuse_earlier_result(trial, record)
                continue
            claim = storage.get_design_claim(study_id, arch_hash)
            if claim is not None and live is None:
                live = storage.get_live_drivers(study_id, heartbeat.STALE_AFTER_S)
            if claim is not None and claim.driver_id in live and claim.driver_id != self.driver_id:
                continue  # still being trained elsewhere
            trial, record = waiters[0]
            outcome = self._claim(trial, record, holder=claim and claim.driver_id)
            if outcome == "wait":
                continue
            del self.waiting[arch_hash]
            if outcome == "train":
                self._train(trial, record)
                self.twins.setdefault(arch_hash, []).extend(waiters[1:])
            else:
                for twin, twin_record in waiters[1:]:
                    self._reuse_earlier_result(twin, twin_record)

    def _train(self, trial, record: TrialRecord) -> None:
        """Send a trial (its row written, state running) to a Ray worker."""
        config = self.config
        payload = TrialPayload(
            storage=config.storage, study_id=self.handle.record_id, trial_id=record.id,
            number=trial.number, arch_json=record.arch_json, task=config.task,
            budget={**config.budget, "rungs": config.pruning.rungs}, train=config.train,
            profile=config.profile, objectives=self.handle.objectives(), pruning=config.pruning,
            seed=config.seed, keep_weights=config.keep_weights != "none",
            threads=max(1, int(self.ray.per_trial["num_cpus"])),
            gpus=self.ray.per_trial["num_gpus"],
            plugins=tuple(with_installed(self._grammar.plugins)),
        )
        ref = self.ray.submit(payload)
        self.inflight[ref] = InFlight(trial.number, record.id, dict(trial.params),
                                      dict(trial.user_attrs), arch_hash=record.arch_hash)

    def _settle_twins(self, info: InFlight, fail_with: TrialResult | None = None) -> None:
        """Finish the trials that waited on `info`'s architecture: with its result when it
        completed, else by training them, or with `fail_with` (the driver is aborting)."""
        for trial, record in self.twins.pop(info.arch_hash, []):
            if fail_with is not None:
                twin = InFlight(trial.number, record.id, dict(trial.params), dict(trial.user_attrs))
                self.record_result(twin, fail_with)
            elif not self._reuse_earlier_result(trial, record):
                self._train(trial, record)

    def _reuse_earlier_result(self, trial, record: TrialRecord) -> bool:
        """Complete `trial` with the result of an earlier trial of the same architecture, if the
        study has one. Every trial of a study trains with the same task, budget and seed, so
        training it again would repeat that run; samplers often re-propose designs they like."""
        earlier = self.handle.storage.get_first_result(record.study_id, record.arch_hash)
        if earlier is None:
            return False
        record.state, record.values = "complete", dict(earlier.values)
        record.metrics, record.profile = earlier.metrics, earlier.profile
        record.duplicate_of, record.compute_seconds = earlier.number, 0.0
        record.finished_at = utcnow()
        self.handle.storage.add_trial(record)
        values = [float(earlier.values[n]) for n in self.handle.objective_names()]
        self.handle.optuna_study.tell(trial, values, skip_if_finished=True)
        self._show(f"trial {trial.number} complete: same architecture as trial {earlier.number}, "
                   "result reused")
        return True

    def _finish_without_training(self, trial, record: TrialRecord, state: str, reason: str):
        record.state, record.failure_reason, record.finished_at = state, reason, utcnow()
        self.handle.storage.add_trial(record)
        self.handle.optuna_study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        self._show(f"trial {trial.number} {state}: {reason}")

    def _collect(self, ref) -> None:
        info = self.inflight.pop(ref)
        result = self.ray.result(ref)
        if result.device_note and not self._noted_cpu_fallback:
            self._noted_cpu_fallback = True
            self._note(f"trial {info.number}: {result.device_note}")
        self.record_result(info, result)
        self._settle_twins(info)
        self._release(info.arch_hash)

    def record_result(self, info: InFlight, result: TrialResult) -> None:
        """Write a trial's outcome, then tell Optuna. The row is updated only while it is still
        `running`: another driver that took the trial over as stale (and re-queued it) wins."""
        status, reason = result.status, result.reason
        values = None
        if status == "complete":
            values, missing = self._objective_values(result)
            if missing:
                status, reason = "failed", f"objective(s) not measured: {', '.join(missing)}"
        retry = None
        if status == "failed" and result.retry:
            attempt = int(info.user_attrs.get("attempt", 0))
            retry = retry_attrs(info.number, attempt, info.user_attrs, self.config.max_retries)
        fields = self._outcome_fields(result, status, reason, values, retry is not None)
        weights = None
        if result.weights and status == "complete":
            weights = (int(result.vocab_size), result.weights)
        if not self.handle.storage.finish_running_trial(info.record_id, fields, weights):
            self._show(f"trial {info.number}: taken over as stale by another driver; "
                       "result dropped")
            return
        self._tell(info, status, values, retry)
        message = f"trial {info.number} {status}"
        if status == "failed":
            message += f": {reason}" + (" (retrying)" if retry else "")
        self._show(message)

    def _outcome_fields(self, result: TrialResult, status: str, reason: str | None,
                        values: list[float] | None, retried: bool) -> dict[str, Any]:
        """The trial row's columns for a worker's result."""
        fields: dict[str, Any] = {
            "state": status, "finished_at": utcnow(), "compute_seconds": result.seconds,
            "metrics": result.metrics or None, "failure_reason": reason, "retried": retried,
        }
        if result.worker:
            fields["worker"] = result.worker
        if result.profile:
            fields["profile"] = result.profile
        if values is not None:
            fields["values"] = dict(zip(self.handle.objective_names(), values))
        if status == "pruned":
            fields["saved_steps"] = int(result.budget_steps - result.pruned_at_step)
        return fields

    def _tell(self, info: InFlight, status: str, values: list[float] | None,
              retry: dict[str, Any] | None) -> None:
        study = self.handle.optuna_study
        if retry is not None:
            study.enqueue_trial(info.params, user_attrs=retry)
        if status == "complete":
            study.tell(info.number, values, skip_if_finished=True)
            if self.config.keep_weights == "pareto":
                front = self.handle.storage.get_pareto_trials(self.handle.record_id,
                                                              self.handle.objectives())
                self.handle.storage.drop_weights_except(self.handle.record_id,
                                                        {t.number for t in front})
        elif status == "pruned":
            study.tell(info.number, state=TrialState.PRUNED, skip_if_finished=True)
        else:
            study.tell(info.number, state=TrialState.FAIL, skip_if_finished=True)

    def _objective_values(self, result: TrialResult) -> tuple[list[float], list[str]]:
        measured = {**result.profile, **result.metrics}
        names = self.handle.objective_names()
        missing = [n for n in names if n not in measured]
        return [float(measured[n]) for n in names if n in measured], missing

    def _check_timeouts(self) -> None:
        limit = self.config.trial_timeout_s
        if not limit:
            return
        now = time.monotonic()
        for ref, info in list(self.inflight.items()):
            if now - info.started > limit:
                self.ray.cancel(ref)
                del self.inflight[ref]
                self.record_result(info, TrialResult.failed(f"timed out after {limit:g} s"))
                self._settle_twins(info)
                self._release(info.arch_hash)

    def _abort_inflight(self) -> None:
        for ref, info in list(self.inflight.items()):
            self.ray.cancel(ref)
            del self.inflight[ref]
            reason = "interrupted: the driver was stopped by a second Ctrl-C"
            result = TrialResult.failed(reason, retry=True)
            self.record_result(info, result)
            self._settle_twins(info, fail_with=result)
            self._release(info.arch_hash)
        for waiters in self.waiting.values():
            for trial, record in waiters:
                waiter = InFlight(trial.number, record.id, dict(trial.params),
                                  dict(trial.user_attrs))
                self.record_result(waiter, TrialResult.failed(
                    "interrupted: the driver was stopped by a second Ctrl-C", retry=True))
        self.waiting.clear()

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
        """Fail and re-queue the trials of drivers that stopped beating (heartbeat.py)."""
        return heartbeat.recover_stale(self.handle, self.driver_id)

    # ---------------------------------------------------------------- bookkeeping
    def counts(self) -> Counts:
        """The study's trial counts now (the front size is filled in by the display)."""
        return Counts(**asdict(self.handle.storage.count_trials(self.handle.record_id)))

    def _show(self, message: str | None) -> Counts:
        counts = self.counts()
        if self.progress is not None:
            if counts.complete:
                counts.front = len(self.handle.storage.get_pareto_trials(
                    self.handle.record_id, self.handle.objectives()))
            self.progress.update(counts, self.config.n_trials, message)
        return counts

    def _install_signal_handlers(self):
        if threading.current_thread() is not threading.main_thread():
            return None

        def on_sigint(_signum, _frame):
            if not self.stopping:
                self.stopping = True
                self._note("Ctrl-C: no new trials; waiting for the trials in flight "
                           "(Ctrl-C again to stop them now)")
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
