"""The exception tree; every error resprobe raises says where it happened and what to do next.

    ResprobeError
    ├── UsageError            bad input from the user (exit code 2)
    │   ├── SourceError       a model source that cannot be resolved or built
    │   └── InputsError       example inputs that cannot be used
    └── AnalysisError         the analysis itself failed (exit code 1)
        ├── CaptureError      the recorded forward pass raised
        ├── VerificationError a detected block did not check out numerically
        └── LayoutError       Graphviz could not lay out a diagram (it failed or crashed)
            └── LayoutTimeout the layout ran past its time limit
"""

from __future__ import annotations

__all__ = [
    "AnalysisError",
    "CaptureError",
    "InputsError",
    "LayoutError",
    "LayoutTimeout",
    "ResprobeError",
    "SourceError",
    "UsageError",
    "VerificationError",
]


class ResprobeError(Exception):
    """Base class of every error resprobe raises on purpose."""

    exit_code = 1


class UsageError(ResprobeError):
    """The user asked for something that cannot work as given."""

    exit_code = 2


class SourceError(UsageError):
    """A model source could not be resolved or did not produce an ``nn.Module``."""


class InputsError(UsageError):
    """Example inputs are missing or do not fit the model."""


class AnalysisError(ResprobeError):
    """The analysis failed on a model that was accepted as input."""


class CaptureError(AnalysisError):
    """The forward pass raised while it was being recorded."""


class VerificationError(AnalysisError):
    """A detected block did not satisfy ``join output == skip + branch`` on real values."""


class LayoutError(AnalysisError):
    """Graphviz (``dot``, or ``graphviz-pure``) failed or crashed laying out a diagram. Not the
    user's fault: the DOT source resprobe wrote is still good, and can be written to a file."""


class LayoutTimeout(LayoutError):
    """The layout program ran past its time limit."""
