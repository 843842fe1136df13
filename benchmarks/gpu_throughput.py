"""Trials per hour on one GPU with 1, 2, 4 and 8 trials packed onto it (issue 17).

Small proxy models leave most of a GPU idle; Ray's fractional GPUs let several trials share it.
For each study scale and pack size k this runs the study's own file through the product path,
`mixnas study start FILE --workers k --gpus-per-trial 1/k --n-trials N` (a fresh SQLite database
each time), then reads every trial's start and end from the database. It reports trials per hour
over the wall clock (Ray's start included) and over the span from the first trial's start to the
last one's end, counting only trials that trained (a design drawn twice is trained once and is not
counted), the mean seconds per trial, and the packing gain: trials per hour at k over k = 1.
A run stopped by `--timeout-s` still counts the trials it finished.

Scales: `quickstart` (studies/quickstart.yaml), `lm-gpu` (studies/lm-gpu.yaml), or a study file.
Usage: python -m benchmarks.gpu_throughput [--scales quickstart lm-gpu] [--packs 1 2 4 8]
       [--trials N [N ...]] [--timeout-s S] [--out PATH] [--check]
Needs a CUDA GPU; without one it checks each run's `study start` command line (and study file),
says so in one line and exits 0. `--check` does the same checks and prints the plan, GPU or not.
Any invalid command line: one line naming it, exit 2.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import RESULTS, device_slug, environment, write_json

ROOT = Path(__file__).resolve().parent.parent
SCALES = {"quickstart": ROOT / "studies" / "quickstart.yaml",
          "lm-gpu": ROOT / "studies" / "lm-gpu.yaml"}
MAX_PACK = 16


def _pack(text: str) -> int:
    value = int(text)
    if not 1 <= value <= MAX_PACK:
        raise argparse.ArgumentTypeError(f"packs must be from 1 to {MAX_PACK}, got {value}")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_throughput",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--scales", nargs="+", default=list(SCALES),
                        help="quickstart, lm-gpu or study file paths")
    parser.add_argument("--packs", nargs="+", type=_pack, default=[1, 2, 4, 8],
                        help="trials sharing the GPU at once (each gets 1/k of it)")
    parser.add_argument("--trials", nargs="+", type=_positive,
                        help="trials per run: one number, or one per pack (default 2 k, >= 4)")
    parser.add_argument("--timeout-s", type=_positive, default=1800, help="limit per run")
    parser.add_argument("--out", help="JSON path (default benchmarks/results/"
                                      "gpu_throughput_<device>.json)")
    parser.add_argument("--check", action="store_true",
                        help="validate the arguments and study files, print the plan")
    args = parser.parse_args(argv)
    if args.trials and len(args.trials) not in (1, len(args.packs)):
        parser.error(f"--trials takes one number or one per pack ({len(args.packs)}), "
                     f"got {len(args.trials)}")
    args.studies = {}
    for scale in args.scales:
        path = SCALES.get(scale, Path(scale))
        if not path.is_file():
            known = f" (known scales: {', '.join(SCALES)})" if scale not in SCALES else ""
            parser.error(f"--scales {scale}: no study file {path}{known}")
        args.studies[scale] = path
    return args


def trials_for(args, i: int, pack: int) -> int:
    if not args.trials:
        return max(4, 2 * pack)
    return args.trials[0] if len(args.trials) == 1 else args.trials[i]


def start_command(study: Path, storage: str, pack: int, trials: int) -> list[str]:
    """The `mixnas study start` command line of one run: `pack` trials, 1/pack of the GPU each."""
    return [sys.executable, "-m", "mixnas.cli", "study", "start", str(study), "--storage", storage,
            "--workers", str(pack), "--gpus-per-trial", f"{1 / pack:.6g}",
            "--n-trials", str(trials), "--quiet"]


def check_command(cmd: list[str]) -> str | None:
    """Why `mixnas` would refuse the command line `cmd` (its study file included), or None."""
    import contextlib
    import io

    from mixnas.cli import build_parser
    from mixnas.errors import MixnasError
    from mixnas.orchestrator.config import load_study_config

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            args = build_parser().parse_args(cmd[3:])
        load_study_config(args.file, validate_names=False)
    except SystemExit:
        return err.getvalue().strip().splitlines()[-1]
    except MixnasError as exc:
        return str(exc)
    return None


def trial_times(storage: str) -> list[dict]:
    """Start, end and duplicate_of of every trial of the only study in `storage`."""
    from mixnas.dashboard.store import Store

    store = Store(storage)
    (study,) = store.studies()
    rows = []
    for number, state, *_ in store.trial_rows(store.study(study["name"])["id"], [], None,
                                              None)["rows"]:
        t = store.trial(study["name"], number)
        rows.append({"number": number, "state": state, "duplicate_of": t["duplicate_of"],
                     "started_at": t["started_at"], "finished_at": t["finished_at"],
                     "compute_seconds": t["compute_seconds"]})
    return rows


def summarise(rows: list[dict], wall: float) -> dict:
    """Trials per hour (wall clock and first-start-to-last-end span) over trained trials."""
    from datetime import datetime

    trained = [r for r in rows if r["duplicate_of"] is None and r["finished_at"]
               and r["state"] in ("complete", "pruned")]
    out = {"trials": len(rows), "trained": len(trained), "wall_seconds": wall,
           "trials_per_hour_wall": 3600 * len(trained) / wall if wall > 0 else None,
           "span_seconds": None, "trials_per_hour": None, "mean_trial_seconds": None}
    if trained:
        starts = [datetime.fromisoformat(r["started_at"]) for r in trained]
        ends = [datetime.fromisoformat(r["finished_at"]) for r in trained]
        span = (max(ends) - min(starts)).total_seconds()
        out.update(span_seconds=span, trials_per_hour=3600 * len(trained) / span if span else None,
                   mean_trial_seconds=sum((e - s).total_seconds() for s, e in zip(starts, ends))
                   / len(trained))
    return out


def add_packing_gains(results: list[dict]) -> None:
    """packing_gain: trials per hour at k packed over k = 1, per scale (where both ran)."""
    for r in results:
        base = next((b for b in results if b["scale"] == r["scale"] and b["pack"] == 1), None)
        if base and base.get("trials_per_hour") and r.get("trials_per_hour"):
            r["packing_gain"] = r["trials_per_hour"] / base["trials_per_hour"]


def run_study(cmd: list[str], timeout: int, log: Path) -> tuple[int | None, list[str]]:
    """Run `study start`; past `timeout`, Ctrl-C it twice (the driver then fails its in-flight
    trials and shuts its Ray down, so no worker keeps the GPU), and kill what is left after 30 s.
    Returns (exit code or None when stopped, the log's last lines)."""
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            rc = None
            _stop(proc)
        except KeyboardInterrupt:  # our own limit (gpu-check's `timeout -s INT`): stop it too
            _stop(proc)
            raise
    tail = log.read_text().strip().splitlines()[-3:]
    return rc, tail + ([f"stopped after {timeout} s"] if rc is None else [])


def _stop(proc: subprocess.Popen) -> None:
    for _ in range(2):
        proc.send_signal(signal.SIGINT)
        time.sleep(1)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def run_one(study: Path, pack: int, trials: int, timeout: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="mixnas-throughput-") as tmp:
        storage = f"sqlite:///{tmp}/throughput.db"
        cmd = start_command(study, storage, pack, trials)
        start = time.perf_counter()
        rc, tail = run_study(cmd, timeout, Path(tmp) / "study.log")
        wall = time.perf_counter() - start
        result = {"pack": pack, "gpus_per_trial": 1 / pack, "n_trials": trials, "rc": rc,
                  "log_tail": tail}
        try:
            result.update(summarise(trial_times(storage), wall))
        except Exception as exc:  # no database (the run failed early): report what we have
            result.update(wall_seconds=wall, error=f"{type(exc).__name__}: {exc}")
    return result


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    plan = [(scale, pack, trials_for(args, i, pack)) for scale in args.studies
            for i, pack in enumerate(args.packs)]
    for scale, pack, trials in plan:
        problem = check_command(start_command(args.studies[scale], "sqlite://", pack, trials))
        if problem:
            print(f"gpu_throughput: {scale} x{pack}: invalid study command line: {problem}",
                  file=sys.stderr)
            return 2
    runs = "; ".join(f"{s} x{p} ({n} trials)" for s, p, n in plan)
    if args.check:
        print(f"gpu_throughput: would run {runs}")
        return 0
    import torch

    if not torch.cuda.is_available():
        print(f"gpu_throughput: no CUDA GPU here: nothing measured; the command lines of its "
              f"{len(plan)} runs are valid ({runs})")
        return 0
    name = torch.cuda.get_device_name(0)
    out = Path(args.out) if args.out else RESULTS / f"gpu_throughput_{device_slug(name)}.json"
    results = []
    for scale, pack, trials in plan:
        result = {"scale": scale, **run_one(args.studies[scale], pack, trials, args.timeout_s)}
        results.append(result)
        add_packing_gains(results)
        print(json.dumps({k: result.get(k) for k in ("scale", "pack", "rc", "trained",
                                                     "trials_per_hour", "packing_gain")}))
        # after every run: an outer time limit keeps what was measured
        write_json(out, {"environment": environment("benchmarks.gpu_throughput", argv),
                         "device": name, "runs": results})
    print(f"wrote {out}")
    return 0 if all(r["rc"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
