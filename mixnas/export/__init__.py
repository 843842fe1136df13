"""Export an architecture (and its trained weights) as a standalone PyTorch model directory."""

from mixnas.export.codegen import generate_code
from mixnas.export.commands import export_from_file, export_from_study
from mixnas.export.exporter import ExportError, ExportExistsError, export_architecture

__all__ = [
    "ExportError",
    "ExportExistsError",
    "export_architecture",
    "export_from_file",
    "export_from_study",
    "generate_code",
]
