"""Test-session setup shared by every area.

Triton decides whether to interpret kernels on the CPU when it is first imported (torch's flop
counter imports it), so the choice must be made before any test module is collected.
"""

import os
import sys

import pytest

# MIXNAS_TEST_DEVICE=cuda runs the kernel tests on a GPU, with compiled kernels
if os.environ.get("MIXNAS_TEST_DEVICE", "cpu") == "cpu":
    os.environ.setdefault("TRITON_INTERPRET", "1")



@pytest.fixture(autouse=True)
def _forget_plugins():
    """Primitives and metrics a test's plugins registered in this process are forgotten after
    it, so that another test may load a plugin of the same name (built-ins stay: they register
    once per process, from mixnas's own modules)."""
    registry = sys.modules.get("mixnas.search_space.registry")
    before = (set(registry.REGISTRY), set(registry.METRICS)) if registry else None
    plugins = sys.modules.get("mixnas.search_space.plugins")
    loaded_before = set(plugins.LOADED) if plugins else set()
    yield
    registry = sys.modules.get("mixnas.search_space.registry")
    if registry is None:
        return

    def ours(obj) -> bool:
        return getattr(obj, "__module__", "").startswith("mixnas.")

    names, metrics = before or (set(), set())
    for name in set(registry.REGISTRY) - names:
        if not ours(registry.REGISTRY[name].build):
            del registry.REGISTRY[name]
            registry.ORIGIN.pop(name, None)
    for name in set(registry.METRICS) - metrics:
        if not ours(registry.METRICS[name].compute):
            del registry.METRICS[name]
            registry.ORIGIN.pop(f"metric:{name}", None)
    plugins = sys.modules.get("mixnas.search_space.plugins")
    if plugins is not None:
        for module in set(plugins.LOADED) - loaded_before:
            del plugins.LOADED[module]
            sys.modules.pop(module, None)
