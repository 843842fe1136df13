"""Two drivers in one process, on one SQLite study, with a stand-in for Ray that "trains" a design
in 0.3 s and records it: no design is trained twice (issue 14), and every trial that repeated a
design carries the result of the one that trained it. Fast and deterministic where the Ray test
(tests/reliability/test_two_drivers.py) is end to end."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from mixnas.orchestrator.config import load_study_config
from mixnas.orchestrator.driver import Driver
from mixnas.orchestrator.study import create_study, load_study
from mixnas.orchestrator.trials import TrialResult
from mixnas.search_space import Architecture

from ..reliability.test_two_drivers import TWO_DESIGNS

SPACE = TWO_DESIGNS  # the same two-design grammar as the two-driver Ray tests
STUDY = """\
name: claims
search_space: two.yaml
task: {name: mqar, vocab_size: 16, seq_len: 32, num_kv_pairs: 4}
budget: {steps: 10}
objectives:
  - {name: accuracy, direction: maximize}
n_trials: 10
workers: 2
sampler: random
baselines: []
pruning: {enabled: false}
"""


class FakeRay:
    """RayRuntime's interface; a trial is ready 0.3 s after it was submitted."""

    def __init__(self, trained: list[str], lock: threading.Lock):
        self.trained, self.lock, self.due = trained, lock, {}
        self.workers, self.per_trial = 2, {"num_cpus": 1.0, "num_gpus": 0.0}  # the study file's

    def start(self):
        pass

    def stop(self):
        pass

    def submit(self, payload):
        with self.lock:
            self.trained.append(Architecture.from_json(payload.arch_json).hash)
        ref = object()
        self.due[ref] = (time.monotonic() + 0.3, payload)
        return ref

    def ready(self, refs, timeout_s):
        time.sleep(min(timeout_s, 0.05))
        return [r for r in refs if self.due[r][0] <= time.monotonic()]

    def result(self, ref):
        _, payload = self.due.pop(ref)
        accuracy = 0.25 if '"d_model":16' in payload.arch_json.replace(" ", "") else 0.5
        return TrialResult("complete", metrics={"accuracy": accuracy}, seconds=0.3,
                           worker="fake:1")

    def cancel(self, ref):
        self.due.pop(ref, None)


def test_two_drivers_never_train_one_design_twice(tmp_path: Path):
    (tmp_path / "two.yaml").write_text(SPACE)
    (tmp_path / "claims.yaml").write_text(STUDY)
    config = load_study_config(tmp_path / "claims.yaml")
    config.storage = f"sqlite:///{tmp_path}/claims.db"
    first = create_study(config)
    second = load_study("claims", config.storage)
    trained: list[str] = []
    lock = threading.Lock()
    drivers = [Driver(first), Driver(second)]
    for driver in drivers:
        driver.ray = FakeRay(trained, lock)
    errors = []

    def run(driver):
        try:
            driver.run()
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(d,)) for d in drivers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors and not any(t.is_alive() for t in threads), errors
    assert len(trained) == len(set(trained)) <= 2, trained
    rows = first.storage.get_trials(first.record_id)
    assert len([r for r in rows if r.state == "complete"]) >= config.n_trials
    assert not [r for r in rows if r.state != "complete"]
    by_number = {r.number: r for r in rows}
    for row in rows:
        if row.duplicate_of is not None:
            source = by_number[row.duplicate_of]
            assert source.arch_hash == row.arch_hash and source.values == row.values
    assert {r.driver_id for r in rows} == {d.driver_id for d in drivers}
    assert first.storage.get_design_claim(first.record_id, rows[0].arch_hash) is None
