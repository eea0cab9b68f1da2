"""resprobe: find every residual block in a PyTorch model and measure it as a refinement step."""

from ._version import __version__
from .blocks import Block, Stream, find_blocks, streams
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
from .load import Loaded, load
from .verify import BlockCheck, verify_blocks

__all__ = [
    "AnalysisError",
    "Block",
    "BlockCheck",
    "CaptureError",
    "Graph",
    "Inputs",
    "InputsError",
    "Loaded",
    "Node",
    "ResprobeError",
    "SourceError",
    "Stream",
    "UsageError",
    "VerificationError",
    "__version__",
    "capture",
    "find_blocks",
    "load",
    "streams",
    "verify_blocks",
]
