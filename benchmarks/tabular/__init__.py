"""The tabular benchmark: a finite grammar trained exhaustively once, then replayed by samplers."""
