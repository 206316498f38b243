"""Samplers of the reverse SDE and the probability-flow ODE."""
from .correctors import CORRECTORS, ald, langevin, no_corrector
from .hooks import Conditioner, CountingScore
from .ode import ode_sample
from .pc import pc_sample, time_grid
from .predictors import PREDICTORS, ancestral, euler_maruyama, no_predictor, reverse_diffusion
from .schedules import SCHEDULES, schedule_times
from .tweedie_samplers import TWEEDIE_SAMPLERS, dds, ddnm, diffpir, pigdm
from .warm_start import tweedie_sample, warm_start

__all__ = ["pc_sample", "ode_sample", "time_grid", "Conditioner", "CountingScore", "PREDICTORS", "CORRECTORS",
           "euler_maruyama", "reverse_diffusion", "ancestral", "no_predictor", "langevin", "ald", "no_corrector",
           "SCHEDULES", "schedule_times", "TWEEDIE_SAMPLERS", "dds", "diffpir", "ddnm", "pigdm", "tweedie_sample",
           "warm_start"]
