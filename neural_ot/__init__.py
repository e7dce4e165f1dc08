"""neural_ot: regularised optimal-transport duals, keypoint-masked OT and the compatibility function.

A standalone toolkit (numpy, scipy, torch) used by :mod:`otpr_sb3`. See the paper's Eq. 3-6 and 12-15.
"""

from neural_ot.compatibility import Compatibility, Resampled, resample_from_scores
from neural_ot.costs import L1, CallableCost, Cosine, CostFn, Euclidean, SqEuclidean, get_cost
from neural_ot.discrete import solve, solve_discrete
from neural_ot.duals import (
    c_transform,
    density,
    dual_objective,
    plan,
    plan_marginals,
    potential_values,
    relative_marginal_errors,
)
from neural_ot.keypoints import (
    KeypointRelationCost,
    MixedCost,
    js_divergence_matrix,
    keypoint_mask,
    relation_vectors,
)
from neural_ot.potentials import MLPPotential, TabularPotential
from neural_ot.regularizers import Entropic, Regularizer, SquaredL2, get_regularizer
from neural_ot.results import DualResult, OTResult
from neural_ot.stochastic import EntropicDual, L2Dual, MaskedL2Dual, Minibatch, StochasticDual

__version__ = "0.1.0"

__all__ = [
    "L1",
    "CallableCost",
    "Compatibility",
    "DualResult",
    "Minibatch",
    "EntropicDual",
    "L2Dual",
    "MLPPotential",
    "MaskedL2Dual",
    "Resampled",
    "StochasticDual",
    "TabularPotential",
    "Cosine",
    "CostFn",
    "Entropic",
    "Euclidean",
    "KeypointRelationCost",
    "MixedCost",
    "OTResult",
    "Regularizer",
    "SqEuclidean",
    "SquaredL2",
    "c_transform",
    "density",
    "dual_objective",
    "get_cost",
    "get_regularizer",
    "js_divergence_matrix",
    "keypoint_mask",
    "plan",
    "plan_marginals",
    "potential_values",
    "relation_vectors",
    "relative_marginal_errors",
    "resample_from_scores",
    "solve",
    "solve_discrete",
]
