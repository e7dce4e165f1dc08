"""Noise schedule, DDIM sampler and denoiser shapes."""

import pytest
import torch as th

from otpr_sb3.diffusion import VPSchedule
from otpr_sb3.networks import ResidualMLPDenoiser


def test_vp_schedule_matches_closed_form():
    sched = VPSchedule(20, beta_min=0.1, beta_max=20.0)
    t = th.arange(21, dtype=th.float64) / 20
    expected = th.exp(-0.5 * t**2 * 19.9 - 0.1 * t)
    th.testing.assert_close(sched.alphas_cumprod.double(), expected, rtol=1e-6, atol=0)
    assert sched.alphas_cumprod[0] == 1.0 and sched.alphas_cumprod[-1] < 1e-4
    assert sched.ddim_timesteps(5) == [20, 15, 10, 6, 1]
    assert sched.ddim_timesteps(20) == list(range(20, 0, -1))
    with pytest.raises(ValueError, match="DDIM steps"):
        sched.ddim_timesteps(21)


def test_ddim_with_perfect_score_recovers_gaussian():
    """For a Gaussian target the optimal noise predictor is known in closed form; DDIM (a first-order
    solver of the probability-flow ODE) must reproduce the target, with an error that shrinks with K."""
    mu, s = th.tensor([0.5, -0.3]), th.tensor([0.2, 0.4])
    sched = VPSchedule(1000)

    def perfect_eps(a, k, cond):
        ab = sched.alphas_cumprod[k][:, None]
        return (1 - ab).sqrt() * (a - ab.sqrt() * mu) / (ab * s**2 + 1 - ab)

    noise = th.randn(100_000, 2, generator=th.Generator().manual_seed(0))
    errors = []
    for n_steps in (20, 100, 1000):
        out = sched.ddim_sample(perfect_eps, th.zeros(100_000, 1), noise, n_steps, clip=None)
        th.testing.assert_close(out.mean(0), mu, atol=5e-3, rtol=0)
        errors.append(float((out.std(0) / s - 1).abs().max()))
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 0.02


def test_weighted_loss_ignores_zero_weights():
    sched = VPSchedule(10)
    model = ResidualMLPDenoiser(3, 2, hidden_dim=16, n_blocks=1)
    a0, cond = th.randn(6, 2), th.randn(6, 3)
    w = th.tensor([1.0, 0.0, 2.0, 0.0, 0.0, 1.0])
    base = sched.epsilon_loss(model, a0, cond, w, generator=th.Generator().manual_seed(1))
    a0_changed = a0.clone()
    a0_changed[[1, 3, 4]] += 100.0  # wildly different targets where H = 0
    changed = sched.epsilon_loss(model, a0_changed, cond, w, generator=th.Generator().manual_seed(1))
    th.testing.assert_close(base, changed)
    zero = sched.epsilon_loss(model, a0, cond, th.zeros(6))
    assert zero.item() == 0.0
    zero.backward()
    assert all(p.grad is None or p.grad.abs().max() == 0 for p in model.parameters())


def test_weighted_loss_normalized_or_mean():
    sched = VPSchedule(10)
    model = ResidualMLPDenoiser(3, 2, hidden_dim=16, n_blocks=1)
    a0, cond = th.randn(8, 2), th.randn(8, 3)
    w = th.tensor([1.0, 0.0, 2.0, 0.0, 0.5, 1.0, 0.0, 3.0])

    def loss(weights, normalize):
        return sched.epsilon_loss(model, a0, cond, weights, generator=th.Generator().manual_seed(2), normalize=normalize)

    unweighted = sched.epsilon_loss(model, a0, cond, generator=th.Generator().manual_seed(2))
    th.testing.assert_close(loss(th.ones(8), True), unweighted)
    th.testing.assert_close(loss(th.ones(8), False), unweighted)
    th.testing.assert_close(loss(5 * w, True), loss(w, True))  # normalised: invariant to the weights' scale
    th.testing.assert_close(loss(5 * w, False), 5 * loss(w, False))  # mean: a batch with little mass moves less
    th.testing.assert_close(loss(w, False), loss(w, True) * w.sum() / 8)


def test_denoiser_shapes_and_clipped_sampling():
    sched = VPSchedule(20)
    model = ResidualMLPDenoiser(obs_dim=5, act_dim=3, hidden_dim=32, n_blocks=2)
    obs = th.randn(7, 5)
    eps = model(th.randn(7, 3), th.randint(1, 21, (7,)), obs)
    assert eps.shape == (7, 3)
    a = sched.ddim_sample(model, obs, th.randn(7, 3) * 10, n_steps=5)
    assert a.shape == (7, 3) and a.abs().max() <= 1.0 + 1e-6
