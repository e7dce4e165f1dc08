"""Exact shifts of the unbalanced trees of an L2 plan's support, for Newton's crawl near the unregularised limit.

At a small eps the active pairs (``z > 0``) of an iterate can form a forest whose trees carry unequal mass. Along the
direction that raises ``u`` on a tree's rows and lowers ``v`` on its columns, ``z`` is constant inside the tree, so
the dual is linear until a pair leaving the tree becomes active: the Hessian is singular there, and the
Levenberg-damped Newton step moves such a tree by about its imbalance over the damping. On 200 x 150 random costs at
``eps = 1e-10`` the solves took 130-280 Newton iterations; at ``1e-12`` all 500 of ``max_iter``, each step moving
trees by about 2e-7 with the marginals unchanged. The minimiser along that direction is a one-dimensional
piecewise-linear root over the tree's outgoing pairs. :func:`tree_shifts` takes it tree by tree (block coordinate
descent: the dual never increases); the Newton stage calls it once the error has stopped halving.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch as th
from scipy.sparse.csgraph import connected_components

from neural_ot._dual_problem import _Problem, _SparseProblem

_MAX_TREES = 32  # trees shifted per call, the most unbalanced first (each costs a pass over the candidate pairs)
_MAX_PAIRS = 250_000  # a dense problem is shifted only up to this many pairs (it lists them all)


def tree_shifts(prob: _Problem | _SparseProblem, u: th.Tensor, v: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
    """Return ``(u, v)`` with the most unbalanced trees of the active pairs moved to their exact minimisers.

    Candidate pairs are the working set's (``_SparseProblem``) or every allowed pair of a dense problem of at most
    ``_MAX_PAIRS`` pairs; larger dense problems are returned unchanged (the same tensors, as when no tree moves). The
    trees are found on the CPU (scipy's connected components); on an accelerator the pairs are copied there, which
    costs little beside a stalled stage.
    """
    n, m = prob.shape
    if isinstance(prob, _SparseProblem):
        rows, cols, z = (t.cpu().numpy() for t in (prob.rows, prob.cols, prob.z(u, v, out=prob.scratch("tmp"))))
    elif n * m <= _MAX_PAIRS:
        Z = prob.z(u, v, out=prob.scratch("tmp")).cpu().numpy()  # "tmp" is free between Newton iterations
        allowed = np.ones(Z.shape, dtype=bool) if prob.mask is None else prob.mask.cpu().numpy() > 0
        rows, cols = np.nonzero(allowed)
        z = Z[rows, cols]
    else:
        return u, v
    du, dv = _shifts(n, m, rows, cols, z, prob.a.cpu().numpy(), prob.b.cpu().numpy(), prob.r.reg)
    if not (du.any() or dv.any()):
        return u, v
    return u + th.from_numpy(du).to(u), v + th.from_numpy(dv).to(v)


def _shifts(
    n: int, m: int, rows: np.ndarray, cols: np.ndarray, z: np.ndarray, a: np.ndarray, b: np.ndarray, eps: float
) -> tuple[np.ndarray, np.ndarray]:
    """Potential changes ``(du, dv)`` that move each unbalanced tree of the pairs with ``z > 0``, one after another.

    The pairs between trees are grouped once by the tree of their row and of their column (a stable sort of small
    integers); each tree then reads only its own outgoing pairs, at their current ``z`` (earlier shifts included).
    A shift is the exact minimiser along its tree's direction unless an earlier shift made a pair into the tree
    active; it then stops short of it, and the dual still decreases all the way.
    """
    du, dv = np.zeros(n), np.zeros(m)
    active = z > 0
    graph = sp.coo_matrix((np.ones(int(active.sum())), (rows[active], cols[active] + n)), shape=(n + m, n + m))
    k, labels = connected_components(graph, directed=False)
    if k == 1:
        return du, dv
    tree_u, tree_v = labels[:n], labels[n:]
    excess = np.bincount(tree_u, a, k) - np.bincount(tree_v, b, k)  # row mass the tree's columns cannot take
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
        if out.size == 0:
            continue
        x = z[out] + du[rows[out]] + dv[cols[out]]
        s = _root(x, a[rows[out]] * b[cols[out]] / (2.0 * eps), abs(float(excess[t])))
        if s <= 0:  # an earlier shift already brought this tree its mass
            continue
        s = s if excess[t] > 0 else -s
        du[tree_u == t] += s
        dv[tree_v == t] -= s
    return du, dv


def _grouped(pairs: np.ndarray, keys: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``pairs`` ordered by ``keys`` (tree labels below ``k``) and the start of each tree's run (``k + 1`` offsets)."""
    order = np.argsort(keys, kind="stable")
    return pairs[order], np.searchsorted(keys[order], np.arange(k + 1))


def _root(x: np.ndarray, w: np.ndarray, target: float) -> float:
    """Return the ``s`` with ``sum_k w_k (x_k + s)_+ = target > 0`` (pairs enter in decreasing ``x``; linear between)."""
    order = np.argsort(-x)
    xs, ws = x[order], w[order]
    cw, cwx = np.cumsum(ws), np.cumsum(ws * xs)
    s = (target - cwx) / cw  # with the first j pairs active
    nxt = np.append(xs[1:], -np.inf)
    valid = (xs + s >= 0) & (nxt + s <= 0)
    return float(s[int(np.argmax(valid))]) if valid.any() else 0.0  # none only by rounding: no move
