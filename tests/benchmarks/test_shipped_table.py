"""The shipped table still matches the grammar and the architecture hashes it was built from."""

from benchmarks.tabular.build import GRAMMAR, SETTINGS, TABLE
from benchmarks.tabular.table import Table, distinct_architectures
from mixnas.search_space.grammar import Grammar


def test_shipped_table_covers_the_tabular_grammar():
    grammar = Grammar.load(GRAMMAR)
    space = distinct_architectures(grammar)
    with Table(TABLE) as table:
        rows = table.rows()
        meta = table.meta()
    assert set(rows) == set(space), "rebuild: python -m benchmarks.tabular.build"
    assert meta["settings"] == SETTINGS and meta["grammar"] == GRAMMAR.read_text()
    for h, row in rows.items():
        assert space[h][1].canonical_json() == row.arch_json
        assert row.status == "complete" and 0.0 <= row.metrics["accuracy"] <= 1.0
        assert row.profile["non_embedding_params"] > 0
