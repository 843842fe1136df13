"""What `mixnas primitive check FILE_OR_MODULE[:NAME]` does, and the quick check `study start` runs
on every plugin primitive a grammar uses before its first trial.

The CLI only parses arguments and prints: a plugin that does not load raises `PluginError` (one
line naming its file), a failed property is one line naming the parameters that broke it.
"""

from __future__ import annotations

from pathlib import Path

from mixnas.errors import PluginError
from mixnas.search_space import registry
from mixnas.search_space.checks import PROPERTIES, check_primitive
from mixnas.search_space.plugins import PluginSource, load_plugin


def split_target(target: str) -> tuple[str, str | None]:
    """'my_mixers.py:ema' -> ('my_mixers.py', 'ema'); 'pkg.mixers' -> ('pkg.mixers', None)."""
    ref, sep, name = target.rpartition(":")
    if sep and ref and name.isidentifier():
        return ref, name
    return target, None


def plugin_primitives(plugin: PluginSource) -> list[str]:
    """The primitives a loaded plugin registered, in registration order."""
    origin = plugin.path or plugin.ref
    return [name for name, where in registry.ORIGIN.items()
            if where == origin and name in registry.REGISTRY]


def check(target: str, examples: int = 12, base_dir: str | Path = ".") -> tuple[list[str], bool]:
    """Load a plugin and check its primitives' properties.

    Args:
        target: `FILE_OR_MODULE[:NAME]` (a .py path or an importable module; NAME: check one).
        examples: Parameter settings hypothesis draws per property.
        base_dir: What a relative file path is relative to.

    Returns:
        The report's lines (one per failed property, or one 'ok' line per primitive), and
        whether every property held.

    Raises:
        PluginError: The plugin does not load, defines no primitive, or not NAME.
    """
    ref, name = split_target(target)
    plugin = load_plugin(ref, base_dir)
    names = plugin_primitives(plugin)
    where = plugin.path or plugin.ref
    if not names:
        raise PluginError(f"{where}: defines no primitive (call register(PrimitiveSpec(...)))")
    if name is not None:
        if name not in names:
            raise PluginError(f"{where}: no primitive {name!r} here; it defines "
                              f"{', '.join(names)}")
        names = [name]
    lines, ok = [], True
    for each in names:
        failures = check_primitive(registry.REGISTRY[each], examples=examples)
        lines += [f"{where}: {f.line(each)}" for f in failures]
        if not failures:
            lines.append(f"{where}: {each}: ok ({', '.join(PROPERTIES)}; "
                         f"{examples} settings each)")
        ok = ok and not failures
    return lines, ok


def quick_check(plugins: tuple[PluginSource, ...] | list[PluginSource]) -> None:
    """The check `study start` runs before any trial: 2 settings per property per primitive.

    Raises:
        PluginError: The first failed property, as one line naming the file and parameters.
    """
    for plugin in plugins:
        for name in plugin_primitives(plugin):
            failures = check_primitive(registry.REGISTRY[name], examples=2)
            if failures:
                raise PluginError(f"{plugin.path or plugin.ref}: {failures[0].line(name)} "
                                  f"(run `mixnas primitive check {plugin.ref}:{name}`)")


def add_cli(commands) -> None:
    """Add `mixnas primitive check` to the CLI's subcommands (an argparse subparsers object)."""
    primitive = commands.add_parser("primitive", help="check your own primitives")
    actions = primitive.add_subparsers(title="primitive commands", metavar="ACTION")
    run = actions.add_parser(
        "check", help="property-check the primitives of a plugin file or module")
    run.add_argument("target", metavar="FILE_OR_MODULE[:NAME]")
    run.add_argument("--examples", type=int, default=12,
                     help="parameter settings drawn per property (default 12)")
    run.set_defaults(handler=_cmd_check)


def _cmd_check(args) -> int:
    lines, ok = check(args.target, max(1, args.examples))
    print("\n".join(lines))
    return 0 if ok else 2
