"""Classical baselines: FBP (CT), zero-filled IFFT (MRI), FISTA-TV (any linear operator)."""
from .fbp import fbp
from .fista_tv import fista_tv, power_method, tune_fista_lambda
from .tv import prox_tv, tv
from .zero_filled import zero_filled, zero_filled_ifft

__all__ = ["fbp", "zero_filled", "zero_filled_ifft", "fista_tv", "prox_tv", "tv",
           "power_method", "tune_fista_lambda"]
