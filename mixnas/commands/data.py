"""`mixnas data ...`: prepare text corpora for language modelling and describe them."""

from __future__ import annotations

import json

from rich.console import Console

from mixnas.commands.common import positive_int


def add_commands(commands) -> None:
    """Add `data` and its actions to the top-level subparsers."""
    data = commands.add_parser("data", help="prepare text corpora for language modelling")
    data_cmds = data.add_subparsers(title="data commands", metavar="ACTION")
    prep = data_cmds.add_parser(
        "prepare", help="tokenise local text into DIR/train.bin, val.bin and meta.json")
    prep.add_argument("sources", nargs="+", metavar="SRC",
                      help="files, directories (searched recursively) or globs: plain text, "
                      ".jsonl with a 'text' field, parquet with a 'text' column (needs pyarrow)")
    prep.add_argument("-o", "--output", required=True, metavar="DIR")
    prep.add_argument("--tokenizer", default="byte",
                      help="byte (default), bpe:VOCAB (train a byte-level BPE on the corpus) or "
                      "PATH/tokenizer.json")
    prep.add_argument("--val-frac", type=float, default=0.05,
                      help="share of documents held out for validation (default 0.05)")
    prep.add_argument("--max-bytes", type=positive_int, help="read at most this much text")
    prep.add_argument("--include", action="append", metavar="GLOB",
                      help="file patterns searched in directories (repeatable; default: *.txt "
                      "*.md *.rst *.py *.text *.markdown *.jsonl *.parquet)")
    prep.add_argument("--exclude", action="append", metavar="GLOB",
                      help="skip files and directories with a matching name inside directories "
                      "(repeatable), e.g. --exclude site-packages")
    prep.add_argument("--force", action="store_true", help="replace DIR if it exists")
    prep.add_argument("--quiet", action="store_true", help="no progress bar")
    prep.set_defaults(handler=cmd_data_prepare)
    info = data_cmds.add_parser("info", help="what a prepared corpus holds")
    info.add_argument("dir")
    info.add_argument("--json", action="store_true")
    info.set_defaults(handler=cmd_data_info)


def cmd_data_prepare(args) -> int:
    from pathlib import Path

    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    from mixnas.data import PrepareOptions, prepare
    from mixnas.data.prepare import check

    options = PrepareOptions(
        sources=args.sources, out=Path(args.output), tokenizer=args.tokenizer,
        val_frac=args.val_frac, max_bytes=args.max_bytes, force=args.force,
        include=tuple(args.include) if args.include else PrepareOptions.include,
        exclude=tuple(args.exclude or ()),
    )
    check(options)  # every input problem is one line before the progress display starts
    console = Console(stderr=True)
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
               TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, disable=args.quiet) as progress:
        meta = prepare(options, progress)
    print(_corpus_summary(args.output, meta))
    return 0


def cmd_data_info(args) -> int:
    from mixnas.data import PreparedCorpus

    corpus = PreparedCorpus.open(args.dir)
    if args.json:
        print(json.dumps({k: v for k, v in corpus.meta.items() if k != "sources"}, indent=2))
        return 0
    print(_corpus_summary(args.dir, corpus.meta))
    return 0


def _corpus_summary(path, meta) -> str:
    tok = meta["tokenizer"]
    name = "byte" if tok["kind"] == "byte" else f"bpe:{tok['vocab_size']}"
    train, val = meta["train"], meta["val"]
    per = (train["bytes"] + val["bytes"]) / max(1, train["tokens"] + val["tokens"])
    return (f"{path}: {train['tokens']:,} train + {val['tokens']:,} val tokens ({name}, "
            f"{meta['dtype']}, {per:.2f} bytes/token) from {len(meta['sources'])} file(s); "
            f"split: {meta['split']['rule']}")
