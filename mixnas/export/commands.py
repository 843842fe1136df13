"""What `mixnas export` does: export a study's trial or Pareto front, or an architecture file.

Export reads mixnas's own tables (the architecture JSON, objective values and stored weights) and
never trains or imports the search driver: everything it needs is in the database.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import torch
import yaml

from mixnas.export.exporter import ExportError, check_target, export_architecture
from mixnas.orchestrator.models import StudyRecord, TrialRecord, TrialWeights
from mixnas.orchestrator.storage import connect, exists
from mixnas.pareto import front_nd, to_loss
from mixnas.search_space.architecture import Architecture
from mixnas.search_space.baselines import BASELINES, get_baseline
from mixnas.search_space.model import build_model

DEFAULT_VOCAB_SIZE = 256


def export_from_study(
    storage_url: str,
    study: str,
    *,
    trial: int | None = None,
    pareto: bool = False,
    out_dir: str | os.PathLike,
    force: bool = False,
) -> list[Path]:
    """Export trial `trial` into `out_dir`, or (`pareto`) every complete trial on the study's
    Pareto front into `out_dir/trial_<N>/`. Returns the files written.

    A trial whose weights the study did not keep is exported as code and config (random weights);
    its vocabulary size is that of the study's stored weights (one task per study)."""
    if (trial is None) == (not pareto):
        raise ExportError("give exactly one of --trial N and --pareto")
    if not exists(storage_url):
        raise ExportError(f"no mixnas database at {storage_url}")
    with connect(storage_url, create=False)() as session:
        record = session.scalar(sa.select(StudyRecord).where(StudyRecord.name == study))
        if record is None:
            known = session.scalars(sa.select(StudyRecord.name).order_by(StudyRecord.name)).all()
            listing = f"; studies there: {', '.join(known)}" if known else "; it has no studies"
            raise ExportError(f"no study named {study!r} in {storage_url}{listing}")
        if pareto:
            trials = _pareto_trials(session, record)
            if not trials:
                raise ExportError(f"study {study!r} has no complete trials with objective values")
            targets = [(t, Path(out_dir) / f"trial_{t.number}") for t in trials]
        else:
            found = session.scalar(
                sa.select(TrialRecord).where(
                    TrialRecord.study_id == record.id, TrialRecord.number == trial
                )
            )
            if found is None:
                raise ExportError(f"study {study!r} has no trial {trial}")
            targets = [(found, Path(out_dir))]
        jobs = [_trial_job(session, record, t, directory) for t, directory in targets]
    for _, _, directory, _, _ in jobs:  # refuse before writing anything
        check_target(directory, force)
    written: list[Path] = []
    for arch, vocab_size, directory, weights, metadata in jobs:
        written += export_architecture(
            arch, vocab_size, directory, state_dict=weights, force=force, metadata=metadata
        )
    return written


def export_from_file(
    arch_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    vocab_size: int | None = None,
    force: bool = False,
) -> list[Path]:
    """Export the architecture in a YAML (or JSON) file, or a baseline given by name, with random
    weights. The file holds an Architecture mapping or the name of a baseline."""
    arch = load_architecture(arch_path)
    vocab = DEFAULT_VOCAB_SIZE if vocab_size is None else vocab_size
    return export_architecture(arch, vocab, out_dir, force=force)


def load_architecture(arch_path: str | os.PathLike) -> Architecture:
    """An Architecture from a YAML/JSON file (a mapping, or a baseline's name) or a baseline name;
    checked by building it on the meta device, so a bad file fails here naming the file."""
    path = Path(arch_path)
    if not path.exists():
        if str(arch_path) in BASELINES:
            return get_baseline(str(arch_path))
        known = ", ".join(sorted(BASELINES))
        raise ExportError(f"{path}: no such file, nor a baseline name (baselines: {known})")
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise ExportError(f"{path}: cannot read the architecture: {_one_line(err)}") from None
    if isinstance(data, str):
        if data not in BASELINES:
            known = ", ".join(sorted(BASELINES))
            raise ExportError(f"{path}: {data!r} is not a baseline (baselines: {known})")
        return get_baseline(data)
    try:
        arch = Architecture.from_dict(data)
        with torch.device("meta"):
            build_model(arch, DEFAULT_VOCAB_SIZE)
    except (ValueError, KeyError, TypeError) as err:
        raise ExportError(f"{path}: not a valid architecture: {_one_line(err)}") from None
    return arch


def _pareto_trials(session: Any, record: StudyRecord) -> list[TrialRecord]:
    """Complete trials whose objective values no other complete trial dominates (without those
    that reused an earlier trial's result: that trial is on the front with the same values)."""
    names = [o["name"] for o in record.objectives]
    directions = [o["direction"] for o in record.objectives]
    complete = session.scalars(
        sa.select(TrialRecord)
        .where(TrialRecord.study_id == record.id, TrialRecord.state == "complete")
        .order_by(TrialRecord.number)
    ).all()
    scored = [
        t
        for t in complete
        if t.duplicate_of is None and t.values and all(n in t.values for n in names)
    ]
    points = [to_loss([float(t.values[n]) for n in names], directions) for t in scored]
    return [scored[i] for i in front_nd(points)]


def _trial_job(
    session: Any, study: StudyRecord, trial: TrialRecord, out_dir: Path
) -> tuple[Architecture, int, Path, bytes | None, dict[str, Any]]:
    """What exporting one trial needs, read while the session is open."""
    where = f"study {study.name!r} trial {trial.number}"
    if not trial.arch_json:
        raise ExportError(f"{where} has no architecture recorded (state {trial.state})")
    try:
        arch = Architecture.from_json(trial.arch_json)
    except ValueError as err:
        raise ExportError(f"{where}: stored architecture is invalid: {_one_line(err)}") from None
    if arch.name is None and trial.baseline:
        arch.name = trial.baseline
    weights = session.get(TrialWeights, trial.id)
    if weights is None and trial.duplicate_of is not None:  # trained once, as that trial
        weights = session.scalar(
            sa.select(TrialWeights)
            .join(TrialRecord, TrialRecord.id == TrialWeights.trial_id)
            .where(TrialRecord.study_id == study.id, TrialRecord.number == trial.duplicate_of)
        )
    if weights is not None:
        vocab_size = weights.vocab_size
    else:
        vocab_size = session.scalar(
            sa.select(TrialWeights.vocab_size)
            .join(TrialRecord, TrialRecord.id == TrialWeights.trial_id)
            .where(TrialRecord.study_id == study.id)
            .limit(1)
        )
        if vocab_size is None:
            raise ExportError(
                f"{where}: the study stored no weights, so its vocabulary size is unknown; use "
                "`mixnas export --arch FILE --vocab-size V`"
            )
    metadata = {
        "study": study.name,
        "trial": trial.number,
        "state": trial.state,
        "values": trial.values,
        "metrics": trial.metrics,
    }
    return arch, vocab_size, out_dir, None if weights is None else weights.data, metadata


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) if str(err) else type(err).__name__
