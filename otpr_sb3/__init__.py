"""otpr_sb3: OT-guided diffusion policies (OTPR) for Stable-Baselines3.

``OTPR("MlpPolicy", env).pretrain(demos).learn(total_timesteps)``; depends on :mod:`neural_ot`, never the
other way round.
"""

from otpr_sb3.demonstrations import Demonstrations, add_demonstrations
from otpr_sb3.ibrl import IBRL
from otpr_sb3.noise_steering import NoiseSteeringWrapper
from otpr_sb3.otpr import OTPR, PAPER_DUAL
from otpr_sb3.policies import CnnPolicy, MlpPolicy, MultiInputPolicy, OTPRPolicy
from otpr_sb3.wrappers import ActionChunkWrapper

__version__ = "0.1.0"
__all__ = [
    "OTPR",
    "PAPER_DUAL",
    "IBRL",
    "ActionChunkWrapper",
    "Demonstrations",
    "NoiseSteeringWrapper",
    "add_demonstrations",
    "CnnPolicy",
    "MlpPolicy",
    "MultiInputPolicy",
    "OTPRPolicy",
]
