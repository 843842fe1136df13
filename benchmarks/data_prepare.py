"""Corpus preparation speed and memory: `mixnas data prepare` on a corpus every machine has.

The corpus is every `.py`, `.md`, `.rst` and `.txt` file of the installed site-packages (about
350 MB on this project's machine; the JSON records the exact file count and bytes). Each
tokenizer runs in a fresh child process, so that its peak resident memory (`ru_maxrss` of the
child) is its own: `byte`, a byte-level BPE trained on the corpus (`bpe:8192`, trained on a 64 MB
hash-chosen sample), and the same BPE loaded from its tokenizer.json (tokenising only). Reports
wall seconds, tokens per second and bytes per second of the whole run (BPE training included),
and the peak RSS against the corpus size (streaming: memory must not grow with the corpus).

    python -m benchmarks.data_prepare [--tokenizers byte,bpe:8192,file] [--max-bytes N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS, environment, write_json

SUFFIXES = ("*.py", "*.md", "*.rst", "*.txt")


def run_one(source: str, out: Path, tokenizer: str, max_bytes: int | None) -> dict[str, Any]:
    """`mixnas data prepare` in a child process; its wall time, peak RSS and meta.json."""
    cmd = [sys.executable, "-m", "mixnas.cli", "data", "prepare", source, "-o", str(out),
           "--tokenizer", tokenizer, "--quiet", "--force"]
    for pattern in SUFFIXES:
        cmd += ["--include", pattern]
    if max_bytes:
        cmd += ["--max-bytes", str(max_bytes)]
    start = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        # wait4 gives this child's own rusage (RUSAGE_CHILDREN would be the max over all children)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            err.seek(0)
            raise SystemExit(f"prepare failed ({tokenizer}): {err.read().decode().strip()}")
    peak_kib = usage.ru_maxrss
    meta = json.loads((out / "meta.json").read_text())
    tokens = meta["train"]["tokens"] + meta["val"]["tokens"]
    text_bytes = meta["train"]["bytes"] + meta["val"]["bytes"]
    return {
        "tokenizer": tokenizer, "wall_seconds": round(wall, 1), "tokens": tokens,
        "text_bytes": text_bytes, "files": len(meta["sources"]),
        "tokens_per_second": round(tokens / wall),
        "mb_per_second": round(text_bytes / wall / 1e6, 2),
        "bytes_per_token": round(text_bytes / tokens, 3),
        "peak_rss_mb": round(peak_kib / 1024, 1),
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1),
        "dtype": meta["dtype"], "split": meta["split"]["rule"],
        "val_tokens": meta["val"]["tokens"], "command": " ".join(cmd[2:]),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default=sysconfig.get_paths()["purelib"])
    parser.add_argument("--tokenizers", default="byte,bpe:8192,file",
                        help="comma-separated; 'file' loads the tokenizer.json the BPE run wrote")
    parser.add_argument("--max-bytes", type=int)
    parser.add_argument("--out", default=str(RESULTS / "data_prepare.json"))
    args = parser.parse_args(argv)
    rows = []
    work = Path(tempfile.mkdtemp(prefix="mixnas-prepare-"))
    try:
        trained = None
        for name in args.tokenizers.split(","):
            if name == "file":
                if trained is None:
                    parser.error("'file' needs a bpe:VOCAB run before it")
                name = str(trained / "tokenizer.json")
            out = work / f"run{len(rows)}"
            rows.append(run_one(args.source, out, name, args.max_bytes))
            if rows[-1]["tokenizer"].startswith("bpe:"):
                trained = out
            print(rows[-1], flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    data = {**environment("benchmarks.data_prepare", argv), "source": args.source,
            "rows": rows}
    write_json(Path(args.out), data)
    return data


if __name__ == "__main__":
    main()
