"""The source collector: what it copies, in which order, and what it refuses."""

from __future__ import annotations

import importlib.util
import sys
import textwrap

import pytest

from mixnas.export.codegen import _check_standalone
from mixnas.export.sources import ExportSourceError, SourceCollector


@pytest.fixture
def make_module(tmp_path):
    """Write and import a throwaway module `mixnas._export_test_<name>` from source text."""
    created = []

    def make(name: str, source: str) -> str:
        module_name = f"mixnas._export_test_{name}"
        path = tmp_path / f"{name}.py"
        path.write_text(textwrap.dedent(source))
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        created.append(module_name)
        spec.loader.exec_module(module)
        return module_name

    yield make
    for module_name in created:
        sys.modules.pop(module_name, None)


def test_collects_dependencies_across_modules_in_a_valid_order(make_module):
    base = make_module("base", """
        import math

        from mixnas.kernels import rms_norm

        UNUSED = 1


        # the base every subclass needs first
        class Base:
            scale = math.pi

            def norm(self, x):
                return rms_norm(x)
    """)
    child = make_module("child", f"""
        import torch

        from {base} import Base


        def helper(x):
            return torch.relu(x)


        class Child(Base):
            def forward(self, x):
                return helper(self.norm(x))
    """)
    collector = SourceCollector()
    collector.add(child, "Child")
    definitions = collector.definitions((base,))  # base's group first, as far as order permits
    names = [d.names[0] for d in definitions]
    modules = {d.names[0]: d.module for d in definitions}
    assert modules["rms_norm"] == "mixnas.kernels.reference"  # the op's plain-torch reference
    assert names.index("rms_norm") < names.index("Base") < names.index("Child")
    assert names.index("helper") < names.index("Child")
    assert "UNUSED" not in names
    assert collector.import_lines() == sorted(set(collector.import_lines()))
    assert {"import math", "import torch"} <= set(collector.import_lines())
    base_source = next(d.source for d in collector.definitions() if d.names == ("Base",))
    assert base_source.startswith("# the base every subclass needs first\nclass Base:")


def test_two_modules_defining_one_name_is_refused(make_module):
    a = make_module("a", "def helper():\n    return 1\n\n\ndef fa():\n    return helper()\n")
    b = make_module("b", "def helper():\n    return 2\n\n\ndef fb():\n    return helper()\n")
    collector = SourceCollector()
    collector.add(a, "fa")
    with pytest.raises(ExportSourceError, match="both define the top-level name 'helper'"):
        collector.add(b, "fb")


def test_a_generated_name_cannot_be_redefined_but_can_be_used(make_module):
    m = make_module("gen", "CONFIG = 1\n\n\ndef f():\n    return PRIMITIVES\n")
    collector = SourceCollector(generated=("PRIMITIVES", "CONFIG"))
    collector.add(m, "f")
    assert [d.names for d in collector.definitions()] == [("f",)]
    with pytest.raises(ExportSourceError, match="'CONFIG'"):
        collector.add(m, "CONFIG")


@pytest.mark.parametrize(
    "source,message",
    [
        ("from mixnas.kernels import attention as attn\n\n\ndef f():\n    return attn\n",
         "import 'attention' under its own name"),
        ("import mixnas.kernels\n\n\ndef f():\n    return mixnas.kernels.attention\n",
         "imports the mixnas module mixnas.kernels"),
    ],
)
def test_uncopyable_imports_are_refused(make_module, source, message):
    m = make_module("bad", source)
    collector = SourceCollector()
    with pytest.raises(ExportSourceError, match=message):
        collector.add(m, "f")


def test_only_top_level_mixnas_objects_can_be_added():
    collector = SourceCollector()
    with pytest.raises(ExportSourceError, match="not a top-level function or class"):
        collector.add_object(lambda d_model: None)
    with pytest.raises(ExportSourceError, match="not a top-level function or class"):
        collector.add_object(dict)


def test_generated_code_must_not_import_mixnas():
    _check_standalone("import torch\n\n\ndef f():\n    import math\n")
    with pytest.raises(ExportSourceError, match="mixnas.kernels at line 5"):
        _check_standalone("import torch\n\n\ndef f():\n    from mixnas.kernels import attention\n")
