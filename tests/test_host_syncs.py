"""Host synchronisations: tensor-to-Python conversions in one action and one training step.

On an accelerator each conversion (``bool``, ``float``, ``int``, ``item``, ``tolist``, ``numpy``) makes the host wait
for the device. No GPU is available here, so the conversions are counted on the CPU by patching them; the code path
is the one ``device="cuda"`` runs. Two kinds of conversion cost nothing on a GPU and are left out: the checks of
``neural_ot._validation.check_on_device`` and ``otpr_sb3.updates.check_finite``, which are asserted on the device
there (``torch._assert_async``), and
conversions of CPU tensors (the replay index draws from a CPU generator; the L2 row sorts of
``neural_ot.regularizers._sorted_rows``, numpy's on the CPU and torch's elsewhere, ``tests/test_discrete.py``).
"""

import collections
import traceback

import pytest
import torch as th

from otpr_sb3 import OTPR
from tests.otpr_helpers import PointGoalEnv, fast, point_goal_demos

CONVERSIONS = ("__bool__", "__float__", "__int__", "__index__", "item", "tolist", "numpy")


@pytest.fixture
def count_conversions(monkeypatch):
    counts = collections.Counter()

    def patch(name):  # a conversion is attributed to the function that made it
        original = getattr(th.Tensor, name)

        def counted(self, *args, **kwargs):
            frame = traceback.extract_stack(limit=3)[-2]
            # `check_on_device` asserts on the device on an accelerator; `counted`: a conversion inside a conversion.
            if frame.name not in ("check_on_device", "check_finite", "counted", "_sorted_rows"):
                counts[(name, frame.filename.rsplit("/", 1)[-1], frame.name)] += 1
            return original(self, *args, **kwargs)

        monkeypatch.setattr(th.Tensor, name, counted)

    def start():
        counts.clear()
        for name in CONVERSIONS:
            patch(name)
        return counts

    return start


def ready_model():
    model = OTPR("MultiInputPolicy", PointGoalEnv(), **fast(dual_start=2, n_keypoints=4), seed=0, device="cpu")
    model.pretrain(point_goal_demos(), n_steps=20)
    model.learn(40)
    assert model.policy.guidance.is_ready
    return model


def test_one_collection_action_synchronises_only_for_the_action_itself(count_conversions):
    model = ready_model()
    obs, _ = PointGoalEnv().reset(seed=0)
    counts = count_conversions()
    model.predict(obs, deterministic=False)
    # The action handed to the environment (SB3's `predict`) is the one conversion a GPU would wait for.
    assert dict(counts) == {("numpy", "policies.py", "predict"): 1}, counts
    counts = count_conversions()
    model.predict(obs, deterministic=True)
    assert dict(counts) == {("numpy", "policies.py", "predict"): 1}, counts


def test_one_training_step_synchronises_a_bounded_number_of_times(count_conversions):
    model = ready_model()
    counts = count_conversions()
    model.train(1, model.batch_size)
    by_site = collections.Counter()
    for (_name, filename, function), n in counts.items():
        by_site[(filename, function)] += n
    # Logging: one conversion for all the step's log values (they stay on the device until then).
    # The batch's finiteness check, the observation statistics flag, and the log values.
    assert by_site[("otpr.py", "train")] <= 3, counts
    # Each optimiser step checks its loss is finite before stepping (a NaN step would corrupt the networks).
    assert by_site[("updates.py", "optimize")] <= 4
    # Nothing converts a tensor per candidate, per pair or per dual step in a loop.
    assert sum(counts.values()) <= 16, counts
    assert ("updates.py", "iql_update") not in by_site and ("updates.py", "candidate_targets_loss") not in by_site
