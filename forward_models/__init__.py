"""Forward models (measurement physics) for score-based inverse problem solvers."""
from .base import ForwardModel, LinearForwardModel
from .classifier import ClassifierGuidance
from .colorization import Grayscale
from .ct import SparseViewCT
from .diagnostics import AdjointReport, check_adjoint
from .inpainting import Inpainting
from .mri import UndersampledMRI

__all__ = ["ForwardModel", "LinearForwardModel", "Inpainting", "Grayscale", "SparseViewCT",
           "UndersampledMRI", "ClassifierGuidance", "check_adjoint", "AdjointReport"]
