"""The `mixnas` subcommands, one module per area; `mixnas.cli` builds the parser from them.

Each module has `add_commands(commands)`, which adds its parsers to the top-level subparsers and
sets each one's `handler`; handlers take the parsed arguments and return the exit code. The work
itself lives in the layer the command belongs to (orchestrator, search_space, evaluator, export,
data, dashboard, kernels): these modules only parse, call and print.
"""
