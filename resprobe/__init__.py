"""resprobe: find every residual block in a PyTorch model and measure it as a refinement step."""

from ._version import __version__
from .analyze import analyze
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
from .inputs import Inputs, infer_inputs, load_inputs
from .load import Loaded, load
from .plugins import Adapter, Exporter, PluginInfo, Probe, Registry
from .probes import ProbeContext
from .report import ProbeResult, Report
from .verify import BlockCheck, verify_blocks

__all__ = [
    "Adapter",
    "AnalysisError",
    "Block",
    "BlockCheck",
    "CaptureError",
    "Exporter",
    "Graph",
    "Inputs",
    "InputsError",
    "Loaded",
    "Node",
    "PluginInfo",
    "Probe",
    "ProbeContext",
    "ProbeResult",
    "Registry",
    "Report",
    "ResprobeError",
    "SourceError",
    "Stream",
    "UsageError",
    "VerificationError",
    "__version__",
    "analyze",
    "capture",
    "find_blocks",
    "infer_inputs",
    "load",
    "load_inputs",
    "streams",
    "verify_blocks",
]
