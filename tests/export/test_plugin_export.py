"""Export of designs that use a user's plugin primitive: the class is copied from the plugin's
source; an import the standalone file could not satisfy is refused, naming file and import."""

import re

import pytest

from mixnas.export import generate_code
from mixnas.export.sources import ExportSourceError
from mixnas.search_space.architecture import Architecture
from mixnas.search_space.plugins import load_plugin

from ..search_space.test_plugins import HEADER, SHIFT, plugin


def _arch(name):
    layer = {"token_mixer": {"type": name, "params": {}}, "channel_mixer": {"type": "mlp"}}
    return Architecture.from_dict({"d_model": 16, "layers": [layer, layer]})


def test_plugin_class_is_copied_into_model_py(tmp_path):
    load_plugin(str(plugin(tmp_path, "copied_shift")))
    code = generate_code(_arch("copied_shift"), 32)
    assert "class CopiedShift(nn.Module):" in code and "\"copied_shift\": CopiedShift" in code
    assert "PrimitiveSpec(" not in code
    assert not re.search(r"^\s*(from|import) mixnas", code, re.M)  # comments may name it


def test_an_import_export_cannot_copy_is_one_clear_error(tmp_path):
    path = tmp_path / "numpy_shift.py"
    source = HEADER + "import numpy as np\n" + SHIFT.format(
        cls="NumpyShift", name="numpy_shift", forward_extra="assert np.pi > 3",
        step_out="y", state_size="self.d_model")
    path.write_text(source)
    load_plugin(str(path))
    with pytest.raises(ExportSourceError, match=rf"{path}: export cannot copy `import numpy as np`"):
        generate_code(_arch("numpy_shift"), 32)
