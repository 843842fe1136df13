"""The last step of scripts/gpu-check.sh: merge what its steps wrote into one JSON with the device
name (benchmarks/results/gpu_check_<device>.json), print a one-screen summary of issue 17's
figures, and copy the result files to $OUT, the folder the device tool brings back, when it
exists.

Usage: python -m benchmarks.gpu_check --work DIR --device NAME [--results DIR] [--slug S]
       [--check]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tarfile
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

from benchmarks.common import RESULTS, device_slug, environment, write_json


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, help="the folder the steps wrote their logs to")
    parser.add_argument("--device", help="the CUDA device name")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--slug", help="device name as a file-name part (default: from --device)")
    parser.add_argument("--check", action="store_true", help="validate the arguments only")
    args = parser.parse_args(argv)
    if not args.check and (args.work is None or args.device is None):
        parser.error("--work and --device are required")
    args.slug = args.slug or device_slug(args.device or "none")
    return args


def _load(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def kernel_tests(xml_path: Path) -> dict | None:
    """Counts and the first failures from pytest's JUnit XML."""
    try:
        root = ET.parse(xml_path).getroot()
    except (OSError, ET.ParseError):
        return None
    suites = [root] if root.tag == "testsuite" else list(root)
    counts = Counter()
    failed = []
    for suite in suites:
        for key in ("tests", "failures", "errors", "skipped"):
            counts[key] += int(suite.get(key, 0))
        for case in suite.iter("testcase"):
            bad = case.find("failure") if case.find("failure") is not None else case.find("error")
            if bad is not None:
                failed.append(f"{case.get('classname')}::{case.get('name')}: "
                              f"{(bad.get('message') or '')[:160]}")
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    return {**counts, "failed": failed}


def kernel_tests_from_log(log: Path) -> dict | None:
    """Counts from pytest's -v lines, for a run stopped before it wrote its XML report."""
    try:
        lines = log.read_text().splitlines()
    except OSError:
        return None
    outcome = re.compile(r"\b(PASSED|FAILED|SKIPPED|ERROR)\b")
    counts = Counter()
    failed = []
    for line in lines:
        m = outcome.search(line)
        if m and "::" in line:
            counts[m.group(1)] += 1
            if m.group(1) in ("FAILED", "ERROR"):
                failed.append(next(w for w in line.split() if "::" in w))
    if not counts:
        return None
    return {"tests": sum(counts.values()), "passed": counts["PASSED"],
            "failures": counts["FAILED"], "errors": counts["ERROR"],
            "skipped": counts["SKIPPED"], "failed": failed, "from_log": True}


def merge(args) -> dict:
    res, slug = args.results, args.slug
    bench = _load(res / f"kernels_{slug}.json")
    table = _load(res / f"kernel_table_{slug}.json")
    return {
        "environment": environment("benchmarks.gpu_check", sys.argv[1:]),
        "device": args.device,
        "steps": [s for p in sorted(args.work.glob("*.step.json")) if (s := _load(p))],
        "kernel_tests": kernel_tests(args.work / "kernel_tests.xml")
        or kernel_tests_from_log(args.work / "tests.log"),
        "bench": None if bench is None else {
            "figures": bench.get("figures"), "environment": bench.get("environment"),
            "failed_checks": [c for c in bench.get("checks", []) if not c["ok"]],
            "errors": [r for r in bench.get("rows", []) if r.get("error")]},
        "table": table,
        "loss_curves": _load(res / f"gpu_loss_curves_{slug}.json"),
        "throughput": _load(res / f"gpu_throughput_{slug}.json"),
        "throughput_full": _load(res / f"gpu_throughput_full_{slug}.json"),
    }


def _x(value, fmt="{:.2f}x"):
    return "-" if value is None else fmt.format(value)


def _outcome(step: dict) -> str:
    return "TIMEOUT" if step["timed_out"] else "ok" if step["rc"] == 0 else f"rc={step['rc']}"


def summary_lines(doc: dict) -> list[str]:
    lines = [f"gpu-check on {doc['device']}"]
    steps = [f"{s['step']} {_outcome(s)} {s['seconds']}s" for s in doc["steps"]]
    lines.append("steps: " + " | ".join(steps))
    t = doc["kernel_tests"]
    lines.append("kernel tests: " + ("no report" if t is None else
                 f"{t['passed']} passed, {t['failures'] + t['errors']} failed, "
                 f"{t['skipped']} skipped" + (" (from the log: stopped early)"
                                             if t.get("from_log") else "")))
    lines += [f"  FAILED {f}" for f in (t or {}).get("failed", [])[:5]]
    figures = (doc["bench"] or {}).get("figures") or {}
    if figures.get("attention_vs_sdpa"):
        lines.append("attention fwd+bwd bf16 vs SDPA's best backend (speedup = its ms / ours):")
        lines.append(f"  {'T':>6} {'D':>4}  {'SDPA best':14s} {'ms':>8}  {'triton':>7}  "
                     f"dispatched")
        for f in figures["attention_vs_sdpa"]:
            lines.append(f"  {f['T']:6d} {f['head_dim']:4d}  {f['sdpa_best'] or '-':14s} "
                         f"{_x(f['sdpa_best_ms'], '{:8.3f}'):>8}  {_x(f['speedup_triton']):>7}  "
                         f"{f['dispatched'] or '-'} {_x(f['speedup_dispatched'])}")
    peak = figures.get("attention_fwd_8k_d128")
    if peak:
        parts = [f"{k} {r['impl']} {_x(r['tflops'], '{:.0f}')} TFLOP/s = "
                 f"{_x(r['pct_peak'], '{:.1f}%')}" for k in ("triton", "sdpa_best", "dispatched")
                 if (r := peak.get(k))]
        lines.append(f"attention fwd T=8192 D=128 (peak {peak['peak_bf16_tflops']}): "
                     + "; ".join(parts))
    for f in figures.get("linear_vs_sdpa", []):
        lines.append(f"{f['op']} ({f['variant']}) T={f['T']} {f['impl']}: {f['ms']:.3f} ms, "
                     f"{_x(f['speedup'])} vs {f['sdpa_best']}")
    if doc["table"]:
        winners = Counter(e["winner"] for e in doc["table"]["entries"])
        lines.append(f"dispatch table: {sum(winners.values())} buckets; winners "
                     + ", ".join(f"{k} {n}" for k, n in winners.most_common()))
    curves = doc["loss_curves"]
    if curves:
        lines.append(f"loss curves ({curves['steps']} steps, max rel diff of train loss vs "
                     "reference): " + ", ".join(
                         f"{r['mode']} {_x(r['max_rel_diff_train_loss'], '{:.2%}')}"
                         for r in curves["runs"] if r["mode"] != "reference"))
    runs = [r for key in ("throughput", "throughput_full")
            for r in (doc[key] or {}).get("runs", [])]
    for r in runs:
        lines.append(f"throughput {r['scale']} x{r['pack']}: {r.get('trained')} trained, "
                     f"{_x(r.get('trials_per_hour'), '{:.0f}')} trials/h "
                     f"(wall {_x(r.get('trials_per_hour_wall'), '{:.0f}')}), "
                     f"packing gain {_x(r.get('packing_gain'))}")
    return lines


def copy_out(args, out_json: Path) -> None:
    """Results and a tarball of the logs into $OUT (the device tool brings back <= 8 files)."""
    dest = os.environ.get("OUT")
    if not dest or not Path(dest).is_dir():
        return
    names = [out_json] + [args.results / f"{stem}_{args.slug}.json" for stem in
                          ("kernels", "kernel_table", "gpu_loss_curves", "gpu_throughput",
                           "gpu_throughput_full")]
    for path in names:
        if path.is_file():
            shutil.copy(path, dest)
    with tarfile.open(Path(dest) / "gpu-check-logs.tar.gz", "w:gz") as tar:
        for path in sorted(args.work.glob("*")):
            tar.add(path, arcname=path.name)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if args.check:
        return 0
    doc = merge(args)
    out = args.results / f"gpu_check_{args.slug}.json"
    write_json(out, doc)
    print("\n".join(summary_lines(doc)))
    print(f"wrote {out}")
    copy_out(args, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
