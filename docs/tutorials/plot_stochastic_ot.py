"""
Continuous measures: neural potentials, out-of-sample H and the barycentric map
================================================================================

The discrete solvers need both point clouds in memory. :class:`neural_ot.L2Dual` instead learns the potentials
:math:`u(x)`, :math:`v(y)` as neural networks from minibatches drawn by two *sampling functions*, so it solves OT
between continuous measures. Its compatibility :math:`H(x, y) = (u(x) + v(y) - c(x, y))_+ / (2\\varepsilon)`
(Eq. 6) then evaluates on points it never saw. We check the result against the exact solve of a fresh discrete
sample.
"""

# %%
# Two continuous measures
# -----------------------
# The source is a Gaussian; the target is a mixture of two Gaussians. Each is given as a function that draws
# ``n`` points with a torch generator.
import matplotlib.pyplot as plt
import numpy as np
import torch as th

import neural_ot

th.manual_seed(0)


def source(n: int, gen: th.Generator) -> th.Tensor:
    return th.randn(n, 2, generator=gen, dtype=th.float64) * 0.5


def target(n: int, gen: th.Generator) -> th.Tensor:
    side = th.randint(0, 2, (n, 1), generator=gen).double() * 2 - 1
    return th.randn(n, 2, generator=gen, dtype=th.float64) * 0.3 + th.cat([3.0 + 0 * side, 1.5 * side], 1)


# %%
# Learn the potentials from minibatches
# -------------------------------------
# The cost is the squared distance divided by a fixed scale, so that ``reg`` does not depend on the units.
reg = 0.01
cost = neural_ot.SqEuclidean(normalize=25.0)
solver = neural_ot.L2Dual(
    reg,
    cost=cost,
    potentials="mlp",
    hidden_sizes=(64, 64),
    batch_size=256,
    learning_rate=3e-3,
    lr_schedule="cosine",
    max_steps=3000,
    seed=0,
    dtype=th.float64,
)
result = solver.fit(source, target)
print(f"{result.n_steps} steps, Monte-Carlo marginal error {result.marginal_error:.3f}")

# %%
# Out of sample: H on fresh points, and the barycentric map
# ---------------------------------------------------------
# ``result.compatibility()`` evaluates :math:`H` on any points. The barycentric map sends each source point to
# the H-weighted mean of a target sample: an estimate of where the plan sends it.
gen = th.Generator().manual_seed(123)
xs, ys = source(300, gen), target(300, gen)
H = result.compatibility()
mapped = H.barycentric_projection(xs, ys)
print(f"H is non-zero on {float((H(xs, ys) > 0).double().mean()):.0%} of the fresh pairs")

# %%
# Checked against the exact solve of the same fresh sample
# --------------------------------------------------------
# :func:`neural_ot.solve_discrete` solves the discrete problem between the two fresh samples exactly. Its plan's
# barycentric map is the reference for the learned one.
exact = neural_ot.solve_discrete(None, None, cost(xs, ys), reg)
reference = exact.barycentric_projection(ys)
error = float((mapped - reference).norm(dim=1).mean())
spread = float((ys - ys.mean(0)).norm(dim=1).mean())
print(f"mean distance between the learned and the exact barycentric maps: {error:.3f}")
print(f"(for scale: the target points lie on average {spread:.2f} from their mean)")

# %%
# How well the map transports: the Sinkhorn divergence
# ----------------------------------------------------
# geomloss's debiased Sinkhorn divergence :math:`S_\varepsilon` is a distance between point clouds (zero for
# equal clouds). The barycentric images of the source sample should lie close to the target measure: we compare
# them with a fresh target sample, against the exact plan's images and against the untransported source. (The
# barycentric map averages over the plan, so it pulls points towards the middle of each mode: even the exact
# map's divergence is not zero.)
from geomloss import SamplesLoss  # noqa: E402

divergence = SamplesLoss("sinkhorn", p=2, blur=0.05)
fresh = target(2000, gen)
for name, pts in (("learned map", mapped), ("exact map", reference), ("source itself", xs)):
    print(f"S_eps({name:13s}, target) = {float(divergence(pts, fresh)):.4f}")

# %%
# Where the source goes
# ---------------------
fig, ax = plt.subplots(figsize=(6, 4))
ax.scatter(*ys.T, s=6, c="tab:orange", alpha=0.4, label="target sample")
ax.scatter(*xs.T, s=6, c="tab:blue", alpha=0.4, label="source sample")
for i in range(0, 300, 6):
    ax.plot([xs[i, 0], mapped[i, 0]], [xs[i, 1], mapped[i, 1]], c="k", lw=0.4, alpha=0.6)
ax.scatter(*np.asarray(mapped).T, s=6, c="k", label="learned barycentric map")
ax.legend(loc="lower left", fontsize=8)
ax.set_aspect("equal")
ax.set_title("Neural L2 potentials: each source point's H-weighted target mean")
plt.show()
