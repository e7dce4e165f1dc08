"""Exact shifts of the unbalanced trees of an L2 plan's support, for Newton's crawl near the unregularised limit.

At a small eps the active pairs (``z > 0``) of an iterate can form a forest whose trees carry unequal mass. Along the
direction that raises ``u`` on a tree's rows and lowers ``v`` on its columns, ``z`` is constant inside the tree, so
the dual is linear until a pair leaving the tree becomes active: the Hessian is singular there, and the
Levenberg-damped Newton step moves such a tree by about its imbalance over the damping. On 200 x 150 random costs at
``eps = 1e-10`` the solves took 130-280 Newton iterations; at ``1e-12`` all 500 of ``max_iter``, each step moving
trees by about 2e-7 with the marginals unchanged. The minimiser along that direction is a one-dimensional
piecewise-linear root over the tree's outgoing pairs. :func:`tree_shifts` takes it tree by tree (block coordinate
descent: the dual never increases); the Newton stage calls it once the error has stopped halving. The relaxed
Newton (:mod:`neural_ot._relaxed_newton`) calls it too: the penalty makes the Hessian definite along a tree's
direction, but where ``rho`` is large against the pairs' curvature barely so, and its steps crawled the same way.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch as th
from scipy.sparse.csgraph import connected_components

from neural_ot._dual_problem import _Problem, _SparseProblem

_MAX_TREES = 32  # trees shifted per call, the most unbalanced first (each costs a pass over the candidate pairs)
_MAX_PAIRS = 250_000  # candidate pairs of a dense problem: its allowed pairs of largest z


def tree_shifts(
    prob: _Problem | _SparseProblem,
    u: th.Tensor,
    v: th.Tensor,
    targets: tuple[th.Tensor, th.Tensor] | None = None,
    curvature: tuple[th.Tensor, th.Tensor] | None = None,
) -> tuple[th.Tensor, th.Tensor]:
    """Return ``(u, v)`` with the most unbalanced trees of the active pairs moved to their exact minimisers.

    A relaxed problem (:mod:`neural_ot.relaxation`) passes its ``targets``, the marginals of its optimum at ``(u, v)``
    (else ``prob.a`` and ``prob.b``), and ``curvature``, the penalty's ``a / rho_x`` and ``b / rho_y``: a tree's
    targets then fall by its curvature times the shift, and the minimiser along its direction is where its outgoing
    pairs and that fall together take its excess.

    Candidate pairs are the working set's (``_SparseProblem``) or the allowed pairs of a dense problem, at most the
    ``_MAX_PAIRS`` largest ``z`` of a larger one (its trees then move at most as far as the largest ``-z`` among
    them). The same tensors are returned when no tree moves. The trees are found on the CPU (scipy's connected
    components); on an accelerator the pairs are copied there, which costs little beside a stalled stage.
    """
    if (targets is None) != (curvature is None):
        raise ValueError("`targets` and `curvature` go together (a relaxed problem's); got only one of them")
    n, m = prob.shape
    reach = np.inf  # how far a tree may move with every pair that can become active on the way among the candidates
    if isinstance(prob, _SparseProblem):
        rows, cols, z = (t.cpu().numpy() for t in (prob.rows, prob.cols, prob.z(u, v, out=prob.scratch("tmp"))))
    else:
        Z = prob.z(u, v, out=prob.scratch("tmp"))  # "tmp" is free between Newton iterations; masked pairs are -inf
        if n * m > _MAX_PAIRS:
            reach = -float(th.topk(Z.flatten(), _MAX_PAIRS, sorted=False).values.min())
            if reach <= 0:  # more active pairs than the candidates can hold
                return u, v
        Zn = Z.cpu().numpy()
        rows, cols = np.nonzero(Zn > -reach)
        z = Zn[rows, cols]
    a, b = prob.a.cpu().numpy(), prob.b.cpu().numpy()
    relaxed = None
    if targets is not None and curvature is not None:  # (both or neither, checked above)
        ta, tb, ka, kb = (t.cpu().numpy() for t in (*targets, *curvature))
        relaxed = (ta, tb, ka, kb)
    du, dv = _shifts(n, m, rows, cols, z, a, b, prob.r.reg, relaxed, reach)
    if not (du.any() or dv.any()):
        return u, v
    return u + th.from_numpy(du).to(u), v + th.from_numpy(dv).to(v)


def _shifts(
    n: int,
    m: int,
    rows: np.ndarray,
    cols: np.ndarray,
    z: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    eps: float,
    relaxed: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None,
    reach: float = np.inf,
) -> tuple[np.ndarray, np.ndarray]:
    """Potential changes ``(du, dv)`` that move each unbalanced tree of the pairs with ``z > 0``, one after another.

    The pairs between trees are grouped once by the tree of their row and of their column (a stable sort of small
    integers); each tree then reads only its own outgoing pairs, at their current ``z`` (earlier shifts included).
    A shift is the exact minimiser along its tree's direction unless an earlier shift made a pair into the tree
    active; it then stops short of it, and the dual still decreases all the way. No shift exceeds ``reach``, below
    which every pair that can become active is among the candidates.
    """
    du, dv = np.zeros(n), np.zeros(m)
    ta, tb, ka, kb = relaxed if relaxed is not None else (a, b, np.zeros(n), np.zeros(m))
    active = z > 0
    graph = sp.coo_matrix((np.ones(int(active.sum())), (rows[active], cols[active] + n)), shape=(n + m, n + m))
    k, labels = connected_components(graph, directed=False)
    if k == 1:
        return du, dv
    tree_u, tree_v = labels[:n], labels[n:]
    excess = np.bincount(tree_u, ta, k) - np.bincount(tree_v, tb, k)  # row mass the tree's columns cannot take
    slope = np.bincount(tree_u, ka, k) + np.bincount(tree_v, kb, k)  # the fall of the excess per unit of shift
    unbalanced = np.nonzero(np.abs(excess) > 1e-9 * a.sum())[0]
    if unbalanced.size == 0:
        return du, dv
    tu, tv = tree_u[rows], tree_v[cols]
    between = np.nonzero(tu != tv)[0]  # no active pair joins two trees
    groups = {side: _grouped(between, keys[between], k) for side, keys in (("u", tu), ("v", tv))}
    for t in unbalanced[np.argsort(-np.abs(excess[unbalanced]))][:_MAX_TREES]:
        # Too much row mass: raise the tree (u up, v down) until pairs from its rows to other columns take the excess;
        # too little: lower it until pairs from other rows into its columns bring it.
        order, starts = groups["u" if excess[t] > 0 else "v"]
        out = order[starts[t] : starts[t + 1]]
        if out.size == 0 and slope[t] <= 0:
            continue
        x = z[out] + du[rows[out]] + dv[cols[out]]
        s = _root(x, a[rows[out]] * b[cols[out]] / (2.0 * eps), abs(float(excess[t])), float(slope[t]))
        if s <= 0:  # an earlier shift already brought this tree its mass
            continue
        s = min(s, reach) if excess[t] > 0 else -min(s, reach)
        du[tree_u == t] += s
        dv[tree_v == t] -= s
    return du, dv


def _grouped(pairs: np.ndarray, keys: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``pairs`` ordered by ``keys`` (tree labels below ``k``) and the start of each tree's run (``k + 1`` offsets)."""
    order = np.argsort(keys, kind="stable")
    return pairs[order], np.searchsorted(keys[order], np.arange(k + 1))


def _root(x: np.ndarray, w: np.ndarray, target: float, slope: float = 0.0) -> float:
    """Return ``s > 0`` with ``sum_k w_k (x_k + s)_+ + slope s = target > 0`` (pairs enter in decreasing ``x``).

    Linear between the entries; ``slope`` is a relaxed tree's (``0``: balanced, and ``x`` must not be empty).
    """
    order = np.argsort(-x)
    xs, ws = x[order], w[order]
    cw, cwx = np.cumsum(ws) + slope, np.cumsum(ws * xs)
    s = np.append(target / slope if slope > 0 else np.inf, (target - cwx) / cw)  # with the first j pairs active
    lower = np.append(np.inf, xs)  # the j-th pair is active: x_j + s >= 0, the next is not
    nxt = np.append(xs, -np.inf)
    valid = (lower + s >= 0) & (nxt + s <= 0)
    return float(s[int(np.argmax(valid))]) if valid.any() else 0.0  # none only by rounding: no move
