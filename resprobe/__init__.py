"""resprobe: find every residual block in a PyTorch model and measure it as a refinement step."""

from .capture import capture
from .errors import (
    AnalysisError,
    CaptureError,
    InputsError,
    ResprobeError,
    SourceError,
    UsageError,
    VerificationError,
)
from .graph import Graph, Node
from .inputs import Inputs

__version__ = "0.1.0"

__all__ = [
    "AnalysisError",
    "CaptureError",
    "Graph",
    "Inputs",
    "InputsError",
    "Node",
    "ResprobeError",
    "SourceError",
    "UsageError",
    "VerificationError",
    "__version__",
    "capture",
]
