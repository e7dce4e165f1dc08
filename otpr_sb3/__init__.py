"""otpr_sb3: OT-guided diffusion policies (OTPR) for Stable-Baselines3.

The algorithm itself arrives with the next milestone; this package depends on :mod:`neural_ot`,
never the other way round.
"""

__version__ = "0.1.0"
__all__: list[str] = []
