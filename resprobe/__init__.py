"""resprobe: find every residual block in a PyTorch model and measure it as a refinement step."""

from ._memory import ensure_fits
from ._version import __version__
from .analyze import DEFAULT_PROBES, analyze
from .blocks import Block, Stream, find_blocks, streams
from .capture import capture
from .data import Data, example_data, load_data
from .depth import exact_profile, sample_profile
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
from .instrument import Gated, gated
from .lesion import lesion
from .load import Loaded, load
from .measure import Measurement, Settings, measure
from .objective import Objective, choose_objective, main_output
from .plugins import Adapter, Exporter, PluginInfo, Probe, Registry
from .probes import ProbeContext
from .render.dot import graph_dot
from .render.dot import render as render_dot
from .render.html import report_html
from .render.refinement import refinement_dot
from .report import ProbeResult, Report
from .verify import BlockCheck, verify_blocks

__all__ = [
    "Adapter",
    "AnalysisError",
    "Block",
    "BlockCheck",
    "CaptureError",
    "DEFAULT_PROBES",
    "Data",
    "Exporter",
    "Gated",
    "Graph",
    "Inputs",
    "InputsError",
    "Loaded",
    "Measurement",
    "Node",
    "Objective",
    "PluginInfo",
    "Probe",
    "ProbeContext",
    "ProbeResult",
    "Registry",
    "Report",
    "ResprobeError",
    "Settings",
    "SourceError",
    "Stream",
    "UsageError",
    "VerificationError",
    "__version__",
    "analyze",
    "capture",
    "choose_objective",
    "ensure_fits",
    "exact_profile",
    "example_data",
    "find_blocks",
    "gated",
    "graph_dot",
    "infer_inputs",
    "lesion",
    "load",
    "load_data",
    "load_inputs",
    "main_output",
    "measure",
    "refinement_dot",
    "render_dot",
    "report_html",
    "sample_profile",
    "streams",
    "verify_blocks",
]
