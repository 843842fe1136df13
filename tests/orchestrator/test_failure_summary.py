"""A study in which no trial completed is summarised in one line (the CLI then exits 1)."""

from __future__ import annotations

from pathlib import Path

from mixnas.orchestrator.config import load_study_config
from mixnas.orchestrator.study import create_study, failure_summary
from mixnas.storage import TrialRecord

SPACE = Path(__file__).parents[1] / "reliability" / "space.yaml"
STUDY = f"""\
name: doomed
search_space: {SPACE}
task: {{name: mqar, vocab_size: 16, seq_len: 32, num_kv_pairs: 4}}
budget: {{steps: 10}}
objectives:
  - {{name: accuracy, direction: maximize}}
n_trials: 4
baselines: []
"""


def _handle(tmp_path):
    path = tmp_path / "doomed.yaml"
    path.write_text(STUDY)
    config = load_study_config(path)
    config.storage = f"sqlite:///{tmp_path}/doomed.db"
    return create_study(config)


def test_a_study_with_no_complete_trial_names_the_commonest_reason(tmp_path):
    handle = _handle(tmp_path)
    reasons = ["out of memory: CUDA", "non-finite loss at step 3", "out of memory: CUDA"]
    for number, reason in enumerate(reasons):
        handle.storage.add_trial(TrialRecord(study_id=handle.record_id, number=number,
                                             state="failed", failure_reason=reason))
    handle.storage.add_trial(TrialRecord(study_id=handle.record_id, number=3,
                                         state="infeasible", failure_reason="infeasible: big"))
    line = failure_summary(handle)
    assert line == ("no trial of study 'doomed' completed: 3 failed, 1 infeasible, 0 pruned; "
                    "commonest reason (2 of 4): out of memory: CUDA")


def test_one_complete_trial_is_enough(tmp_path):
    handle = _handle(tmp_path)
    assert failure_summary(handle) is None  # nothing finished yet: nothing to summarise
    handle.storage.add_trial(TrialRecord(study_id=handle.record_id, number=0, state="failed",
                                         failure_reason="boom"))
    handle.storage.add_trial(TrialRecord(study_id=handle.record_id, number=1, state="complete",
                                         values={"accuracy": 0.5}))
    assert failure_summary(handle) is None
