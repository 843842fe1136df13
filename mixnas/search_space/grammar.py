"""A search space is a probabilistic context-free grammar over architectures, written in YAML.

`Grammar.load` reads and checks a grammar file (format: docs/grammar.md; its parts:
grammar_parts.py, reading: grammar_parser.py, whole-grammar checks: grammar_checker.py).
`Grammar.sample` derives an `Architecture`, asking a `Decider` for every decision under a stable
name (its derivation path), so one grammar drives both random sampling and Optuna studies;
`check_constraints` says why a derived architecture is infeasible.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from rich.text import Text
from rich.tree import Tree

from mixnas.search_space.architecture import Architecture, Layer, Mixer
from mixnas.search_space.constraints import human
from mixnas.search_space.grammar_parser import parse
from mixnas.search_space.grammar_parts import (
    KIND_WORDS,
    SLOT_NAMES,
    Domain,
    GrammarError,
    LayerProduction,
    MotifProduction,
    PerLayerProduction,
    PrimitiveProduction,
    Production,
    RatioProduction,
    Rule,
    RuleProduction,
    Slot,
    Syntax,
)
from mixnas.search_space.sampling import Decider, RandomDecider
from mixnas.yamlfile import read_text

__all__ = ["Grammar", "GrammarError", "ratio_positions", "sample_architectures"]

_MAX_NESTING = 8  # mixers inside mixers (parallel branches); deeper means runaway recursion


class Grammar:
    """A search space: architecture settings, constraints, and weighted rules deriving layers."""

    def __init__(self, syntax: Syntax):
        self.file, self.name, self.description = syntax.file, syntax.name, syntax.description
        self.settings, self.layers, self.rules = syntax.settings, syntax.layers, syntax.rules
        self.constraints = syntax.constraints
        self.plugins = syntax.plugins  # PluginSources the file named, loaded in this process
        # decision name -> (signature, line): a name must mean one thing in every derivation
        self._names: dict[str, tuple[tuple, int]] = {}

    @classmethod
    def load(cls, path: str | Path) -> Grammar:
        """Read and check a grammar file.

        Args:
            path: The grammar YAML file.

        Returns:
            The grammar, parsed and checked (every rule reachable, every slot filled).

        Raises:
            GrammarError: One line, `FILE:LINE: message`, for the first problem found.
        """
        return cls.parse(read_text(path, GrammarError), str(path))

    @classmethod
    def parse(cls, text: str, file: str = "<string>") -> Grammar:
        return cls(parse(text, file))

    # sampling -----------------------------------------------------------------------------

    def sample(self, decider: Decider) -> Architecture:
        """Derive one architecture, asking `decider` every decision the derivation reaches."""
        return _Derivation(self, decider).architecture()

    def check_constraints(self, arch: Architecture) -> list[str]:
        """Why `arch` is infeasible in this space (it must build and fit the bounds); [] if not."""
        return self.constraints.violations(arch)

    def sample_feasible(self, seed: int | None = None, max_tries: int = 200) -> Architecture:
        """A random architecture that satisfies the constraints (infeasible draws are redrawn)."""
        return self._feasible(RandomDecider(seed), max_tries)

    def sample_many(self, n: int, seed: int | None = None) -> list[Architecture]:
        """`n` feasible random architectures; the same seed gives the same list (and a longer
        list starts with the shorter one)."""
        decider = RandomDecider(seed)
        return [self._feasible(decider, max_tries=200) for _ in range(n)]

    def _feasible(self, decider: Decider, max_tries: int) -> Architecture:
        reasons: list[str] = []
        for _ in range(max_tries):
            arch = self.sample(decider)
            reasons = self.check_constraints(arch)
            if not reasons:
                return arch
        raise GrammarError(
            self.file, None, f"no feasible architecture in {max_tries} draws; last: {reasons[0]}"
        )

    def claim_decision(self, name: str, signature: tuple, line: int, taken: set[str]) -> None:
        """Keep decision names unambiguous: one meaning across derivations, once per derivation.

        Args:
            name: The decision's name (its derivation path).
            signature: What the decision means (its domain, or a rule's labels).
            line: The grammar line that makes the decision, for messages.
            taken: The names the current derivation has used so far (`name` is added).

        Raises:
            GrammarError: The name comes twice in one derivation, or means something else
                elsewhere in the grammar.
        """
        if name in taken:
            raise GrammarError(self.file, line, f"decision {name!r} comes twice in one derivation")
        taken.add(name)
        known = self._names.setdefault(name, (signature, line))
        if known[0] != signature:
            raise GrammarError(
                self.file,
                line,
                f"decision {name!r} means something else at line {known[1]}; "
                "rename a rule or give a production a 'label'",
            )

    # display ------------------------------------------------------------------------------

    def render_tree(self) -> Tree:
        """The grammar as a rich tree (for `mixnas space show`)."""
        tree = Tree(Text(f"{self.name}  ({self.file})", style="bold"))
        if self.description:
            tree.add(Text(self.description.strip(), style="italic"))
        arch = tree.add(Text("architecture", style="bold cyan"))
        for key, domain in self.settings.items():
            if domain is not None:
                arch.add(Text(f"{key}: {domain.describe()}"))
        arch.add(Text(f"layers: {self.layers.describe()}"))
        c = self.constraints
        bounds = [
            f"non-embedding params >= {human(c.min_params)}" if c.min_params else None,
            f"non-embedding params <= {human(c.max_params)}" if c.max_params else None,
            f"layers <= {c.max_layers}" if c.max_layers else None,
            f"decode state <= {human(c.max_state_bytes, 'B')} at {c.context_length} tokens"
            if c.max_state_bytes
            else None,
        ]
        node = tree.add(Text("constraints", style="bold cyan"))
        for bound in filter(None, bounds):
            node.add(Text(bound))
        node.add(Text("must build"))
        rules = tree.add(Text("rules", style="bold cyan"))
        for rule in self.rules.values():
            branch = rules.add(Text(f"{rule.name}  -> {KIND_WORDS[rule.kind]}", style="bold"))
            total = sum(p.weight for p in rule.productions)
            for p in rule.productions:
                named = len(rule.productions) > 1 and p.describe().split()[0] != p.label
                label = f"[{p.label}] " if named else ""
                branch.add(Text(f"{100 * p.weight / total:5.1f}%  {label}{p.describe()}"))
        return tree


class _Derivation:
    """One walk of the grammar; decision names are derivation paths (see docs/grammar.md)."""

    def __init__(self, grammar: Grammar, decider: Decider):
        self.grammar, self.decider = grammar, decider
        self.taken: set[str] = set()
        self._depth: int | None = None

    def draw(self, domain: Domain, name: str) -> Any:
        if domain.decided:
            self.grammar.claim_decision(name, domain.signature(), domain.line, self.taken)
        return domain.draw(self.decider, name)

    def depth(self) -> int:
        if self._depth is None:
            self._depth = self.draw(self.grammar.settings["depth"], "depth")
        return self._depth

    def architecture(self) -> Architecture:
        settings = self.grammar.settings
        d_model = self.draw(settings["d_model"], "d_model")
        norm = self.draw(settings["norm"], "norm")
        tie = self.draw(settings["tie_embeddings"], "tie_embeddings")
        layers = self.slot(self.grammar.layers, "", 0)
        return Architecture(d_model=d_model, layers=layers, norm=norm, tie_embeddings=tie)

    def slot(self, slot: Slot, position: str, nesting: int) -> Any:
        if slot.inline is not None:
            return self.produce(slot.inline, _join(position, slot.inline.label), nesting)
        rule = self.grammar.rules[slot.rule]
        named_by_slot = position and rule.name == SLOT_NAMES.get(slot.kind)
        return self.rule(rule, position if named_by_slot else _join(position, rule.name), nesting)

    def rule(self, rule: Rule, name: str, nesting: int) -> Any:
        if len(rule.productions) == 1:
            return self.produce(rule.productions[0], name, nesting)
        labels = tuple(p.label for p in rule.productions)
        self.grammar.claim_decision(name, ("rule", labels), rule.line, self.taken)
        label = self.decider.choose(name, labels, tuple(p.weight for p in rule.productions))
        return self.produce(rule.production(label), _join(name, label), nesting)

    def produce(self, p: Production, name: str, nesting: int) -> Any:
        if isinstance(p, RuleProduction):
            return self.rule(self.grammar.rules[p.rule], name, nesting)
        if isinstance(p, PrimitiveProduction):
            if nesting > _MAX_NESTING:
                raise GrammarError(
                    self.grammar.file,
                    p.line,
                    f"mixers nest deeper than {_MAX_NESTING} levels here; "
                    "lower the weight of the recursive production",
                )
            params = {k: self.draw(d, _join(name, k)) for k, d in p.params.items()}
            for key, slots in p.mixers.items():
                params[key] = [
                    self.slot(s, _join(name, key, str(i)), nesting + 1).to_dict()
                    for i, s in enumerate(slots)
                ]
            return Mixer(p.primitive, params)
        if isinstance(p, LayerProduction):
            token = self.slot(p.token_mixer, _join(name, "token_mixer"), nesting)
            channel = self.slot(p.channel_mixer, _join(name, "channel_mixer"), nesting)
            return Layer(token, channel)
        # Layer-stack patterns place their layers at top-level positions (`layer.3`, `motif.0`,
        # `ratio.a`), so decision names do not depend on which pattern rule led there.
        if isinstance(p, PerLayerProduction):
            return [self.slot(p.layer, f"layer.{i}", nesting) for i in range(self.depth())]
        if isinstance(p, MotifProduction):
            motif = [self.slot(s, f"motif.{i}", nesting) for i, s in enumerate(p.layers)]
            if p.repeat is not None:
                repeat = self.draw(p.repeat, _join(name, "repeat"))
            else:
                repeat = max(1, self.depth() // len(motif))
            return [Layer.from_dict(layer.to_dict()) for _ in range(repeat) for layer in motif]
        assert isinstance(p, RatioProduction)
        r = self.draw(p.r, _join(name, "r"))
        placement = self.draw(p.placement, _join(name, "placement"))
        shared = self.draw(p.shared, _join(name, "shared"))
        depth = self.depth()
        a_positions = ratio_positions(depth, r, placement)
        if not shared:
            return [
                self.slot(p.a if i in a_positions else p.b, f"layer.{i}", nesting)
                for i in range(depth)
            ]
        a = self.slot(p.a, "ratio.a", nesting)
        b = self.slot(p.b, "ratio.b", nesting)
        return [Layer.from_dict((a if i in a_positions else b).to_dict()) for i in range(depth)]


def ratio_positions(depth: int, r: int, placement: str) -> set[int]:
    """Which of `depth` layers are the `a` layers of a 1:r ratio.

    There are round(depth / (r + 1)) of them (at least 1). `interleaved` spreads them evenly, each
    closing its group (r=3: b b b a b b b a); `first`, `middle` and `last` put them in one block
    (`middle` rounds up: depth 8, r=7 puts the `a` layer at index 4, as Jamba does)."""
    count = min(depth, max(1, math.floor(depth / (r + 1) + 0.5)))
    if placement == "interleaved":
        return {(g + 1) * depth // count - 1 for g in range(count)}
    start = {"first": 0, "middle": (depth - count + 1) // 2, "last": depth - count}[placement]
    return set(range(start, start + count))


def sample_architectures(path: str | Path, n: int, seed: int | None = None) -> list[Architecture]:
    """`n` feasible random architectures from a grammar file; the same seed, the same list."""
    return Grammar.load(path).sample_many(n, seed)


def _join(*parts: str) -> str:
    return ".".join(part for part in parts if part)
