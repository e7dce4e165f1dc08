"""OTPR's expert pairs and the keypoints chosen among them (the mask's matched pairs, the relation cost's anchors)."""

from __future__ import annotations

from typing import Any

import torch as th

from otpr_sb3.pretraining import take_obs, torch_obs


class ExpertPairs:
    """Mixin of :class:`~otpr_sb3.OTPR`: keep the expert pairs of ``pretrain`` and give the guidance its keypoints.

    The keypoints are given to the guidance as prepared observations. With a trained features extractor those go
    stale as it trains, so the keypoints' raw observations are kept (``keypoint_raw_obs``, saved with the model) and
    featurised again at every guidance update.
    """

    policy: Any
    seed: int | None
    device: th.device
    dual_kwargs: dict[str, Any]

    def _init_expert_pairs(self) -> None:
        # Empty tensors rather than None, so that `load` can restore them.
        self.expert_obs = th.zeros((0, self.policy.obs_dim), device=self.device)
        self.expert_actions = th.zeros((0, self.policy.act_dim), device=self.device)
        self.keypoint_raw_obs: Any = getattr(self, "keypoint_raw_obs", None)  # a loaded model keeps its own
        self._expert_raw_obs: Any = None  # all expert observations, raw, until the keypoints are chosen

    def _set_expert_pairs(self, obs: Any, actions: th.Tensor) -> None:
        """Keep the expert pairs (observations prepared, or raw for a trained extractor) and choose the keypoints."""
        if self.policy.trains_features:
            self._expert_raw_obs = obs
        else:
            self.expert_obs = obs
        self.expert_actions = actions
        self._set_keypoints()

    def _set_keypoints(self) -> None:
        """Choose the keypoints: distinct expert pairs, seeded, shared by the mask and the relation cost."""
        gen = th.Generator().manual_seed(0 if self.seed is None else self.seed)
        pick = th.randperm(len(self.expert_actions), generator=gen)[: self.dual_kwargs["n_keypoints"]]
        pick = pick.to(self.expert_actions.device)
        if not self.policy.trains_features:
            self.policy.guidance.set_keypoints(self.expert_obs[pick], self.expert_actions[pick])
            return
        if self._expert_raw_obs is None:
            raise RuntimeError("a trained features extractor keeps only the keypoints' observations: `pretrain` again")
        self.keypoint_raw_obs = take_obs(self._expert_raw_obs, pick)
        self.policy.guidance.set_keypoints(self.policy.prepare_obs(self.keypoint_raw_obs), self.expert_actions[pick])

    def _refresh_keypoint_features(self) -> None:
        """Featurise the keypoints with the extractor as it is now (only a trained extractor needs it)."""
        if self.policy.trains_features and self.keypoint_raw_obs is not None:
            guidance = self.policy.guidance
            raw = torch_obs(self.keypoint_raw_obs, self.device)
            guidance.set_keypoints(self.policy.prepare_obs(raw), guidance.keypoint_actions)
