"""Whole-grammar checks of a parsed grammar: references, kinds, termination, reachability.

Run by `grammar_parser.parse` after every production has been read; each failure is a
`GrammarError` at the line of the rule or production at fault.
"""

from __future__ import annotations

from collections.abc import Iterator

from mixnas.errors import did_you_mean
from mixnas.search_space.grammar_parts import (
    KIND_WORDS,
    SLOT_NAMES,
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
)


def check_grammar(file: str, rules: dict[str, Rule], root: Slot, has_depth: bool) -> None:
    """Check the grammar as a whole; raises `GrammarError` at the first problem.

    Args:
        file: The grammar file's name, for messages.
        rules: The parsed rules by name (their `kind` is filled in here).
        root: The start symbol (what derives the layer stack).
        has_depth: Whether `architecture.depth` is given (per_layer and ratio need it).
    """
    _Checker(file, rules, root, has_depth).run()


class _Checker:
    """Whole-grammar checks: references, kinds, termination, reachability."""

    def __init__(self, file: str, rules: dict[str, Rule], root: Slot, has_depth: bool):
        self.file, self.rules, self.root, self.has_depth = file, rules, root, has_depth

    def fail(self, line: int, message: str):
        raise GrammarError(self.file, line, message)

    def run(self) -> None:
        self.references()
        self.kinds()
        self.terminating()
        self.unit_cycles()
        self.reachable()

    def all_slots(self) -> Iterator[Slot]:
        """Every slot of the grammar, inline productions' slots included."""
        stack = [self.root]
        stack += [s for r in self.rules.values() for p in r.productions for s in p.slots()]
        while stack:
            slot = stack.pop()
            yield slot
            if slot.inline is not None:
                stack.extend(slot.inline.slots())

    def references(self) -> None:
        refs = [(s.rule, s.line) for s in self.all_slots() if s.rule]
        refs += [(p.rule, p.line) for p in self.productions() if isinstance(p, RuleProduction)]
        for name, line in sorted(refs, key=lambda ref: ref[1]):
            if name not in self.rules:
                self.fail(line, f"undefined rule {name!r}{did_you_mean(name, self.rules)}")

    def productions(self) -> Iterator[Production]:
        """Every production, inline ones included."""
        for rule in self.rules.values():
            yield from rule.productions
        for slot in self.all_slots():
            if slot.inline is not None:
                yield slot.inline

    def kind_of(self, production: Production) -> str | None:
        if isinstance(production, PrimitiveProduction):
            return production.role
        if isinstance(production, RuleProduction):
            return self.rules[production.rule].kind
        return "layer" if isinstance(production, LayerProduction) else "stack"

    def kinds(self) -> None:
        changed = True
        while changed:
            changed = False
            for rule in self.rules.values():
                kinds = [self.kind_of(p) for p in rule.productions]
                if rule.kind is None and any(kinds):
                    rule.kind, changed = next(k for k in kinds if k), True
        for rule in self.rules.values():
            for production in rule.productions:
                kind = self.kind_of(production)
                if kind and kind != rule.kind:
                    self.fail(
                        production.line,
                        f"this production derives {KIND_WORDS[kind]}, but rule {rule.name!r} "
                        f"derives {KIND_WORDS[rule.kind]}",
                    )
            slot_name = SLOT_NAMES.get(rule.kind)
            if rule.name in SLOT_NAMES.values() and rule.name != slot_name:
                self.fail(rule.line, f"a rule named {rule.name!r} must derive what its name says")
        for slot in sorted(self.all_slots(), key=lambda s: s.line):
            kind = self.rules[slot.rule].kind if slot.rule else self.kind_of(slot.inline)
            if kind and kind != slot.kind:
                what = f"rule {slot.rule!r}" if slot.rule else "this production"
                self.fail(
                    slot.line,
                    f"{KIND_WORDS[slot.kind]} is needed here but {what} derives {KIND_WORDS[kind]}",
                )

    def terminating(self) -> None:
        done: set[str] = set()

        def finishes(production: Production) -> bool:
            if isinstance(production, RuleProduction):
                return production.rule in done
            return all(
                (s.rule in done) if s.rule else finishes(s.inline) for s in production.slots()
            )

        changed = True
        while changed:
            changed = False
            for rule in self.rules.values():
                if rule.name not in done and any(finishes(p) for p in rule.productions):
                    done.add(rule.name)
                    changed = True
        for rule in self.rules.values():
            if rule.name not in done:  # report the loop that causes it, at its first rule
                cycle = self.cycle(rule.name, lambda name: set(self.uses(name)) - done)
                self.fail(
                    self.rules[cycle[0]].line,
                    f"rule {cycle[0]!r} never finishes deriving: every production needs a rule "
                    f"that never finishes ({' -> '.join(cycle)})",
                )

    def uses(self, name: str, units_only: bool = False) -> list[str]:
        """The rules that rule `name` refers to (only through unit productions if asked)."""
        used = []
        for production in self.rules[name].productions:
            if isinstance(production, RuleProduction):
                used.append(production.rule)
            elif not units_only:
                stack = production.slots()
                while stack:
                    slot = stack.pop()
                    if slot.rule:
                        used.append(slot.rule)
                    else:
                        stack.extend(slot.inline.slots())
                        if isinstance(slot.inline, RuleProduction):
                            used.append(slot.inline.rule)
        return used

    def cycle(self, start: str, next_rules) -> list[str]:
        """Follow `next_rules` from `start` until a rule repeats; the path that closes the loop."""
        path = [start]
        while True:
            name = sorted(next_rules(path[-1]))[0]
            if name in path:
                return path[path.index(name) :] + [name]
            path.append(name)

    def unit_cycles(self) -> None:
        for rule in self.rules.values():
            goal = rule.name
            if any(self.reaches(u, goal) for u in self.uses(goal, units_only=True)):
                loop = self.cycle(
                    goal,
                    lambda n, goal=goal: {
                        u for u in self.uses(n, units_only=True) if self.reaches(u, goal)
                    },
                )
                self.fail(
                    rule.line,
                    f"rules {' -> '.join(loop)} refer to each other in a loop without "
                    "deriving anything in between",
                )

    def reaches(self, start: str, goal: str) -> bool:
        seen, stack = set(), [start]
        while stack:
            name = stack.pop()
            if name == goal:
                return True
            if name not in seen:
                seen.add(name)
                stack.extend(self.uses(name, units_only=True))
        return False

    def reachable(self) -> None:
        root = [self.root.rule] if self.root.rule else []
        if self.root.inline is not None:
            root = [s.rule for s in self.root.inline.slots()]
            if isinstance(self.root.inline, RuleProduction):
                root.append(self.root.inline.rule)
        seen, stack = set(), list(root)
        while stack:
            name = stack.pop()
            if name not in seen:
                seen.add(name)
                stack.extend(self.uses(name))
        for rule in self.rules.values():
            if rule.name not in seen:
                self.fail(
                    rule.line,
                    f"rule {rule.name!r} is never used: architecture.layers cannot reach it",
                )
        if not self.has_depth:
            for production in self.productions():
                if isinstance(production, (PerLayerProduction, RatioProduction)) or (
                    isinstance(production, MotifProduction) and production.repeat is None
                ):
                    self.fail(production.line, f"{production.label} needs architecture.depth")
