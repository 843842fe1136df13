"""mixnas: neural architecture search over sequence-model mixer designs."""

__version__ = "0.1.0"
