"""Corpora for language modelling: `prepare` writes token files, `PreparedCorpus` reads them.

A leaf of the package: it imports nothing of mixnas but `mixnas.errors`, so the evaluator (which
trains on corpora) and export (which ships their tokenizer) can both use it.
"""

from mixnas.data.corpus import PreparedCorpus, dtype_for
from mixnas.data.prepare import PrepareOptions, prepare
from mixnas.data.tokenizer import TokenizerSpec

__all__ = ["PrepareOptions", "PreparedCorpus", "TokenizerSpec", "dtype_for", "prepare"]
