"""Noise schedules and the time convention, as plain functions of the step index and sigma."""
from __future__ import annotations

import numpy as np

from core.errors import ConfigError
from core.settings import integer, number

SETTINGS = {
    "annealing": {"num_steps": integer(1, help="annealing steps K"),
                  "sigma_max": number(0, low_open=True, help="sigma_0, the first noise level"),
                  "sigma_min": number(0, low_open=True, help="the last grid point (DAPS replaces it by 0)")},
    "ode": {"num_steps": integer(1, help="Euler steps of the x0 estimate"),
            "sigma_min": number(0, low_open=True, help="where the x0 estimate's ODE stops")},
}


def poly_sigmas(num_points: int, sigma_max: float, sigma_min: float, rho: float = 7.0) -> np.ndarray:
    """EDM's poly-rho grid of `num_points` sigmas from sigma_max down to sigma_min (inclusive)."""
    r = np.linspace(0.0, 1.0, num_points)
    return (sigma_max ** (1 / rho) + r * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho


def annealing_sigmas(num_steps: int, sigma_max: float, sigma_min: float, rho: float = 7.0) -> np.ndarray:
    """sigma_0 .. sigma_K for K annealing steps, with sigma_K = 0.

    DAPS discretises K + 1 poly-7 points and replaces the last one (sigma_min) by 0, so the
    last MCMC step runs at sigma_{K-1} > sigma_min; we keep that to reproduce its numbers.
    """
    grid = poly_sigmas(num_steps + 1, sigma_max, sigma_min, rho)
    return np.concatenate([grid[:-1], [0.0]])


def ode_sigmas(sigma_start: float, num_steps: int, sigma_min: float, rho: float = 7.0) -> np.ndarray:
    """Euler grid for the x0 estimate: num_steps steps from sigma_start to sigma_min."""
    return poly_sigmas(num_steps + 1, sigma_start, sigma_min, rho)


def step_time(k: int, num_steps: int) -> int:
    """Diffusion time t_k = round(1000 (1 - k/K)); t = 200 means the last 20 % of the steps."""
    return int(round(1000 * (1 - k / num_steps)))


def trigger_step(t: int, num_steps: int) -> int | None:
    """First step k with t_k <= t, or None when the trigger is off (t < 0)."""
    if t is None or t < 0:
        return None
    for k in range(num_steps):
        if step_time(k, num_steps) <= t:
            return k
    return None


def check_trigger(key: str, t: int, num_steps: int, what: str) -> None:
    """A ConfigError of one line when a stage's trigger t (>= 0) falls below the last annealing step's t, so the
    stage would never act (`what` says so in the stage's words)."""
    if t >= 0 and trigger_step(t, num_steps) is None:
        last = step_time(num_steps - 1, num_steps)
        raise ConfigError(f"{key}={t} is below the last annealing step's t = {last} ({num_steps} steps): {what}; use "
                          f"a t >= {last} or more annealing steps")


def lr_ratio(k: int, num_steps: int) -> float:
    """Progress fed to the MCMC step-size decay; DAPS divides by K + 1, not K."""
    return k / (num_steps + 1)
