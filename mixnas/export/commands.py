"""What `mixnas export` does: export a study's trial or Pareto front, or an architecture file.

Export reads mixnas's own tables through mixnas.storage (the architecture JSON, objective values
and stored weights) and never trains or imports the search driver: everything it needs is in the
database. Writing the files works from an Architecture and weights alone (exporter.py).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mixnas.errors import ConfigError, StudyNotFound, first_line
from mixnas.export.exporter import ExportError, check_target
from mixnas.export.hf import check_format, study_context, study_exporter, target_files
from mixnas.search_space import baselines
from mixnas.search_space.architecture import Architecture
from mixnas.search_space.plugins import load_records
from mixnas.storage import RDBStorage, StudyRecord, TrialRecord

DEFAULT_VOCAB_SIZE = 256


def export_from_study(
    storage_url: str,
    study: str,
    *,
    trial: int | None = None,
    pareto: bool = False,
    out_dir: str | os.PathLike,
    force: bool = False,
    format: str = "torch",
    tokenizer: str | os.PathLike | None = None,
) -> list[Path]:
    """Export trial `trial` into `out_dir`, or (`pareto`) every complete trial on the study's
    Pareto front into `out_dir/trial_<N>/`. Returns the files written.

    A trial whose weights the study did not keep is exported as code and config (random weights);
    its vocabulary size is that of the study's stored weights (one task per study). `format`
    "hf" writes a transformers model directory instead (see `mixnas.export.hf`), with the
    tokenizer the study's task implies unless `tokenizer` names one."""
    if (trial is None) == (not pareto):
        raise ExportError("give exactly one of --trial N and --pareto")
    if trial is not None and not 0 <= trial < 1 << 63:
        raise ExportError(f"--trial: a trial number is from 0 to 2**63 - 1, got {trial}")
    check_format(format)
    if not RDBStorage.exists(storage_url):
        raise ExportError(f"no mixnas database at {storage_url}")
    storage = RDBStorage(storage_url, "existing")
    try:
        record = storage.get_study(study)
    except StudyNotFound as err:
        raise ExportError(str(err)) from None
    load_records(record.config.get("plugins", []))  # the study's own primitives
    if pareto:
        trials = storage.get_pareto_trials(record.id, record.objectives)
        if not trials:
            raise ExportError(f"study {study!r} has no complete trials with objective values")
        targets = [(t, Path(out_dir) / f"trial_{t.number}") for t in trials]
    else:
        found = storage.get_trial(record.id, trial)
        if found is None:
            raise ExportError(f"study {study!r} has no trial {trial}")
        targets = [(found, Path(out_dir))]
    jobs = [_trial_job(storage, record, t, directory) for t, directory in targets]
    context = study_context(record.config, record.objectives, record.config_path)
    write = study_exporter(format, {job[1] for job in jobs}, context, tokenizer)
    for _, _, directory, _, _ in jobs:  # refuse before writing anything
        check_target(directory, force, target_files(format))
    written: list[Path] = []
    for arch, vocab_size, directory, weights, metadata in jobs:
        written += write(
            arch, vocab_size, directory, state_dict=weights, force=force, metadata=metadata
        )
    return written


def export_from_file(
    arch_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    vocab_size: int | None = None,
    force: bool = False,
    format: str = "torch",
    tokenizer: str | os.PathLike | None = None,
) -> list[Path]:
    """Export the architecture in a YAML (or JSON) file, or a baseline given by name, with random
    weights. The file holds an Architecture mapping or the name of a baseline. `format` and
    `tokenizer` as for `export_from_study`."""
    from mixnas.evaluator.tasks.base import SETTING_LIMITS

    check_format(format)
    vocab = DEFAULT_VOCAB_SIZE if vocab_size is None else vocab_size
    if not 0 < vocab <= SETTING_LIMITS["vocab_size"]:
        raise ExportError(f"--vocab-size: must be from 1 to {SETTING_LIMITS['vocab_size']:,}, "
                          f"got {vocab:,}")
    arch = load_architecture(arch_path)
    write = study_exporter(format, {vocab}, None, tokenizer)
    return write(arch, vocab, out_dir, force=force)


def load_architecture(arch_path: str | os.PathLike) -> Architecture:
    """`search_space.baselines.load_architecture` (which builds the design on the meta device,
    so a bad file fails here naming the file); every problem is an ExportError."""
    try:
        return baselines.load_architecture(arch_path)
    except ConfigError as err:
        raise ExportError(str(err)) from None


def _trial_job(
    storage: RDBStorage, study: StudyRecord, trial: TrialRecord, out_dir: Path
) -> tuple[Architecture, int, Path, bytes | None, dict[str, Any]]:
    """What exporting one trial needs: its architecture, vocabulary size and weights."""
    where = f"study {study.name!r} trial {trial.number}"
    if not trial.arch_json:
        raise ExportError(f"{where} has no architecture recorded (state {trial.state})")
    try:
        arch = Architecture.from_json(trial.arch_json)
    except ValueError as err:
        raise ExportError(f"{where}: stored architecture is invalid: {first_line(err)}") from None
    if arch.name is None and trial.baseline:
        arch.name = trial.baseline
    weights = storage.get_weights(trial)
    if weights is not None:
        vocab_size = weights.vocab_size
    else:
        vocab_size = storage.get_study_vocab_size(study.id)
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
