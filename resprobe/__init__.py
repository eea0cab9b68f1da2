"""resprobe: find every residual block in a PyTorch model and measure it as a refinement step.

The public names below are imported on first use (``resprobe._lazy``): ``import resprobe``
and the command line's ``--version`` and ``--help`` do not import torch."""

import sys
from typing import TYPE_CHECKING

from ._lazy import LazyPackage
from ._version import __version__

if TYPE_CHECKING:
    from ._memory import ensure_fits
    from .analyze import analyze
    from .blocks import Block, Stream, find_blocks, streams
    from .capture import capture
    from .compare import Comparison, compare_reports
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
    from .gated import Gated, gated
    from .graph import Graph, Node
    from .inputs import Inputs, infer_inputs, load_inputs
    from .lesion import lesion
    from .load import Loaded, load
    from .measure import Measurement, Settings, measure
    from .objective import Objective, choose_objective, main_output
    from .plugins import Adapter, Exporter, Option, PluginInfo, Probe, Registry
    from .probes import DEFAULT_PROBES, ProbeContext
    from .render.dot import graph_dot
    from .render.dot import render as render_dot
    from .render.html import report_html
    from .render.refinement import refinement_dot
    from .report import ProbeResult, Report
    from .runlog import Run, RunStep, read_run
    from .verify import BlockCheck, verify_blocks
    from .watcher import Watch, watch

_LAZY = {  # public name: the module that defines it (":name" when named otherwise there)
    "Adapter": ".plugins",
    "AnalysisError": ".errors",
    "Block": ".blocks",
    "BlockCheck": ".verify",
    "CaptureError": ".errors",
    "Comparison": ".compare",
    "DEFAULT_PROBES": ".probes",
    "Data": ".data",
    "Exporter": ".plugins",
    "Gated": ".gated",
    "Graph": ".graph",
    "Inputs": ".inputs",
    "InputsError": ".errors",
    "Loaded": ".load",
    "Measurement": ".measure",
    "Node": ".graph",
    "Objective": ".objective",
    "Option": ".plugins",
    "PluginInfo": ".plugins",
    "Probe": ".plugins",
    "ProbeContext": ".probes",
    "ProbeResult": ".report",
    "Registry": ".plugins",
    "Report": ".report",
    "ResprobeError": ".errors",
    "Run": ".runlog",
    "RunStep": ".runlog",
    "Settings": ".measure",
    "SourceError": ".errors",
    "Stream": ".blocks",
    "UsageError": ".errors",
    "VerificationError": ".errors",
    "Watch": ".watcher",
    "analyze": ".analyze",
    "capture": ".capture",
    "choose_objective": ".objective",
    "compare_reports": ".compare",
    "ensure_fits": "._memory",
    "exact_profile": ".depth",
    "example_data": ".data",
    "find_blocks": ".blocks",
    "gated": ".gated",
    "graph_dot": ".render.dot",
    "infer_inputs": ".inputs",
    "lesion": ".lesion",
    "load": ".load",
    "load_data": ".data",
    "load_inputs": ".inputs",
    "main_output": ".objective",
    "measure": ".measure",
    "refinement_dot": ".render.refinement",
    "render_dot": ".render.dot:render",
    "report_html": ".render.html",
    "sample_profile": ".depth",
    "streams": ".blocks",
    "read_run": ".runlog",
    "verify_blocks": ".verify",
    "watch": ".watcher",
}

__all__ = [
    "Adapter",
    "AnalysisError",
    "Block",
    "BlockCheck",
    "CaptureError",
    "Comparison",
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
    "Option",
    "PluginInfo",
    "Probe",
    "ProbeContext",
    "ProbeResult",
    "Registry",
    "Report",
    "ResprobeError",
    "Run",
    "RunStep",
    "Settings",
    "SourceError",
    "Stream",
    "UsageError",
    "VerificationError",
    "Watch",
    "__version__",
    "analyze",
    "capture",
    "choose_objective",
    "compare_reports",
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
    "read_run",
    "refinement_dot",
    "render_dot",
    "report_html",
    "sample_profile",
    "streams",
    "verify_blocks",
    "watch",
]

sys.modules[__name__].__class__ = LazyPackage
