"""The search space: typed architectures, the primitive registry, model builder and baselines."""

from mixnas.search_space.architecture import Architecture, Layer, Mixer
from mixnas.search_space.baselines import BASELINES, get_baseline
from mixnas.search_space.grammar import Grammar, GrammarError, sample_architectures
from mixnas.search_space.model import MixnasModel, build_model
from mixnas.search_space.sampling import OptunaDecider, RandomDecider, ScriptedDecider

__all__ = [
    "BASELINES",
    "Architecture",
    "Layer",
    "Mixer",
    "MixnasModel",
    "build_model",
    "get_baseline",
    "Grammar",
    "GrammarError",
    "OptunaDecider",
    "RandomDecider",
    "ScriptedDecider",
    "sample_architectures",
]
