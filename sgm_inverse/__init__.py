"""sgm-inverse: imaging inverse problems solved with score-based generative models.

One unconditional score model s_theta(x, t) per image domain; any forward model enters at
sampling time through the Bayes rule for scores, grad log p_t(x | y) = grad log p_t(x) + grad log p_t(y | x).
"""
from .sde import SDE, SubVPSDE, VESDE, VPSDE
from .score import GaussianMixtureScore, GaussianScore, ScoreModel, tweedie_denoise
from .samplers import ode_sample, pc_sample
from .checkpoints import load_score_model, save_score_model
from .classifiers import load_classifier, save_classifier
from .solve import Solution, solve
from .adapters import from_denoiser, from_epsilon

__version__ = "0.1.0"

__all__ = ["SDE", "VESDE", "VPSDE", "SubVPSDE", "ScoreModel", "GaussianScore", "GaussianMixtureScore",
           "tweedie_denoise", "pc_sample", "ode_sample", "load_score_model", "save_score_model", "load_classifier", "save_classifier", "solve", "Solution",
           "from_epsilon", "from_denoiser"]

