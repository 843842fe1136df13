"""Two drivers on one study never train one design twice (issue 14): a design claimed by one
driver's trial in flight is waited for by the other driver's trials of it, which then reuse its
result (`duplicate_of`). On SQLite and on PostgreSQL, both drivers on a shared Ray cluster, with a
grammar of two designs so that nearly every trial repeats one."""

from __future__ import annotations

import pytest

from .conftest import ray_client_env
from .helpers import STUDY, Mixnas, Reader, check_study, wait_until

TWO_DESIGNS = """\
name: two-designs
architecture:
  d_model: {choice: [16, 32]}
  depth: 1
  norm: rms
  tie_embeddings: true
  layers: stack
rules:
  stack:
    - motif: [layer]
  layer:
    token_mixer: {primitive: attention, params: {heads: 1}}
    channel_mixer: {primitive: none}
"""


def _run_two_drivers(url: str, ray_head, tmp_path, name: str) -> None:
    target = 8
    space = tmp_path / "two.yaml"
    space.write_text(TWO_DESIGNS)
    path = tmp_path / f"{name}.yaml"
    path.write_text(STUDY.format(name=name, space=space, steps=120, n_trials=target, workers=2,
                                 max_retries=1, seed=3).replace("baselines: []",
                                                                "baselines: []\nsampler: random"))
    logs = tmp_path / "logs"
    env = ray_client_env(ray_head.address)
    first = Mixnas(logs, "study", "start", str(path), "--storage", url,
                   "--ray-address", ray_head.address, "--quiet", **env)
    reader = Reader(url)
    second = None
    try:
        wait_until("the first driver's trial", reader.running_on_worker, timeout=120)
        second = Mixnas(logs, "study", "resume", name, "--storage", url,
                        "--ray-address", ray_head.address, "--quiet", **env)
        first.check(timeout=240)
        second.check(timeout=240)
    finally:
        reader.close()
        for driver in (first, second):
            if driver is not None:
                driver.kill()
    rows = check_study(url, name, target=target)
    assert not [r for r in rows if r.state == "failed"], [r.failure_reason for r in rows]
    trained = [r for r in rows if r.duplicate_of is None and r.state in ("complete", "pruned")]
    hashes = [r.arch_hash for r in trained]
    assert len(hashes) == len(set(hashes)) <= 2, [(r.number, r.driver_id, r.arch_hash)
                                                  for r in trained]
    assert len({r.driver_id for r in rows}) == 2, "both drivers ran trials"
    by_number = {r.number: r for r in rows}
    for row in rows:
        if row.duplicate_of is not None:  # a reused result is the design's own
            source = by_number[row.duplicate_of]
            assert source.arch_hash == row.arch_hash and source.values == row.values


@pytest.mark.slow
def test_two_drivers_train_each_design_once_on_sqlite(ray_head, tmp_path):
    _run_two_drivers(f"sqlite:///{tmp_path}/two.db", ray_head, tmp_path, "twins")


@pytest.mark.slow
@pytest.mark.postgres
def test_two_drivers_train_each_design_once_on_postgres(pg_url, ray_head, tmp_path):
    _run_two_drivers(pg_url, ray_head, tmp_path, "twins")


def _claims(url: str, tmp_path) -> None:
    from mixnas.orchestrator.config import load_study_config
    from mixnas.orchestrator.study import create_study
    from mixnas.storage import TrialRecord

    space = tmp_path / "two.yaml"
    space.write_text(TWO_DESIGNS)
    path = tmp_path / "claims.yaml"
    path.write_text(STUDY.format(name="claims", space=space, steps=10, n_trials=2, workers=1,
                                 max_retries=0, seed=0))
    config = load_study_config(path)
    config.storage = url
    handle = create_study(config)
    store, sid = handle.storage, handle.record_id
    ids = [store.add_trial(TrialRecord(study_id=sid, number=n, state="running", arch_hash="h"))
           for n in (0, 1)]
    assert store.claim_design(sid, "h", ids[0], "a")
    assert not store.claim_design(sid, "h", ids[1], "b"), "a design is claimed once"
    assert store.get_design_claim(sid, "h").driver_id == "a"
    assert not store.release_design(sid, "h", holder="b"), "only its holder drops a claim"
    assert store.release_design(sid, "h", holder="a")
    assert store.get_design_claim(sid, "h") is None
    assert store.claim_design(sid, "h", ids[1], "b")


def test_design_claims_on_sqlite(tmp_path):
    _claims(f"sqlite:///{tmp_path}/claims.db", tmp_path)


@pytest.mark.postgres
def test_design_claims_on_postgres(pg_url, tmp_path):
    _claims(pg_url, tmp_path)
