"""`mixnas bench kernels`: time the kernel implementations and write the dispatch table."""

from __future__ import annotations


def add_commands(commands) -> None:
    """Add `bench` and its benchmarks to the top-level subparsers."""
    bench = commands.add_parser("bench", help="benchmarks")
    bench_cmds = bench.add_subparsers(title="benchmarks", metavar="WHAT")
    kernels = bench_cmds.add_parser(
        "kernels", help="time every kernel implementation, write the dispatch table (GPU)")
    kernels.add_argument("--json", nargs="?", const="-", metavar="PATH",
                         help="print the results as JSON (or write them to PATH)")
    kernels.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU")
    kernels.add_argument("--table", metavar="PATH", help="where to write the dispatch table")
    kernels.add_argument("--ops", nargs="+", metavar="OP", help="ops to benchmark")
    kernels.add_argument("--lengths", nargs="+", type=int, metavar="T")
    kernels.add_argument("--head-dims", nargs="+", type=int, metavar="D")
    kernels.add_argument("--variants", nargs="+", metavar="V")
    kernels.set_defaults(handler=cmd_bench_kernels)


def cmd_bench_kernels(args) -> int:
    from mixnas.kernels.bench import main as bench_main

    argv = (["--json", args.json] if args.json else []) + (["--smoke"] if args.smoke else [])
    for flag in ("table", "ops", "lengths", "head_dims", "variants"):
        value = getattr(args, flag)
        if value is not None:
            argv += [f"--{flag.replace('_', '-')}", *map(str, value if isinstance(value, list)
                                                          else [value])]
    return bench_main(argv)
