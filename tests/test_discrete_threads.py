"""solve_discrete and the stochastic solvers' fit run small CPU problems on one torch thread and always restore the
caller's thread count."""

import numpy as np
import pytest
import torch as th

import neural_ot as no
import neural_ot._threads as _threads
import neural_ot.discrete as discrete


@pytest.fixture
def two_threads():
    before = th.get_num_threads()
    th.set_num_threads(2)
    yield
    th.set_num_threads(before)


def _seen_threads(monkeypatch):
    seen = []
    inner = discrete._solve_on_support

    def spy(*args, **kwargs):
        seen.append(th.get_num_threads())
        return inner(*args, **kwargs)

    monkeypatch.setattr(discrete, "_solve_on_support", spy)
    return seen


def test_a_small_problem_runs_on_one_thread_and_the_count_is_restored(two_threads, monkeypatch):
    seen = _seen_threads(monkeypatch)
    rng = np.random.default_rng(0)
    M = rng.random((40, 30))
    res = no.solve_discrete(None, None, M, 0.01)
    assert seen == [1] and th.get_num_threads() == 2
    # the same optimum as on two threads (the thread count changes no result beyond rounding)
    monkeypatch.setattr(_threads, "ONE_THREAD_PAIRS", 0)
    again = no.solve_discrete(None, None, M, 0.01)
    assert seen == [1, 2] and np.allclose(res.plan, again.plan, atol=1e-12)


def test_the_thread_count_is_restored_when_the_solve_fails(two_threads, monkeypatch):
    def fail(*args, **kwargs):
        assert th.get_num_threads() == 1
        raise KeyboardInterrupt

    monkeypatch.setattr(discrete, "_solve_on_support", fail)
    with pytest.raises(KeyboardInterrupt):
        no.solve_discrete(None, None, np.ones((5, 5)), 0.1)
    assert th.get_num_threads() == 2


def test_a_large_problem_keeps_the_callers_threads(two_threads, monkeypatch):
    seen = _seen_threads(monkeypatch)
    monkeypatch.setattr(_threads, "ONE_THREAD_PAIRS", 100)
    no.solve_discrete(None, None, np.random.default_rng(1).random((20, 20)), 0.01)
    assert seen == [2] and th.get_num_threads() == 2


def test_a_stochastic_fit_on_small_batches_runs_on_one_thread_and_the_count_is_restored(two_threads, monkeypatch):
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(60, 2)), rng.normal(size=(50, 2)) + 1.0
    seen = []

    def run(solver):
        inner = solver._run

        def spy(*args, **kwargs):
            seen.append(th.get_num_threads())
            return inner(*args, **kwargs)

        solver._run = spy
        return solver.fit(x, y)

    small = run(no.L2Dual(0.1, batch_size=32, max_steps=20, seed=0))
    assert seen == [1] and th.get_num_threads() == 2
    monkeypatch.setattr(_threads, "ONE_THREAD_PAIRS", 32**2 - 1)  # the same batch now counts as large
    large = run(no.L2Dual(0.1, batch_size=32, max_steps=20, seed=0))
    assert seen == [1, 2] and th.get_num_threads() == 2
    # the thread count changes no result beyond rounding
    xt, yt = th.tensor(x, dtype=th.float32), th.tensor(y, dtype=th.float32)
    np.testing.assert_allclose(small.potential_values(xt, yt)[0], large.potential_values(xt, yt)[0], atol=1e-6)
