"""The methods of the benchmark, each a named configuration run by :func:`otpr_sb3.benchmark.runner.run`.

Every OTPR variant and the IDQL-style baseline start from the same pretrained checkpoint (behaviour cloning
and IQL on the demonstrations, one per task, dataset and seed); SAC+demos starts from scratch with the
demonstrations in its replay buffer, as RLPD does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Method:
    """A named configuration.

    Attributes
    ----------
    name : str
    algo : {"bc", "otpr", "sac", "rlpd", "dsrl", "ibrl"}
        ``"bc"``: the pretrained checkpoint evaluated, no fine-tuning. ``"dsrl"``: SAC acting in the initial
        noise of the pretrained diffusion actor, which stays frozen (:class:`otpr_sb3.NoiseSteeringWrapper`).
        ``"ibrl"``: TD3 with the frozen pretrained actor as a second proposer (:class:`otpr_sb3.IBRL`).
        ``"rlpd"``: SAC with RLPD's critic ensemble (:class:`otpr_sb3.rlpd.RLPD`) and the demonstrations.
    description : str
    kwargs : dict
        Keyword arguments of the algorithm (OTPR's or SAC's).
    policy_kwargs : dict
        Keyword arguments of its policy.
    her : bool
        Hindsight relabelling of goal-conditioned replay (``HerSymmetricDictReplayBuffer`` for the SAC family,
        ``HerDictReplayBuffer`` for OTPR).
    """

    name: str
    algo: str
    description: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    policy_kwargs: dict[str, Any] = field(default_factory=dict)
    her: bool = False

    @property
    def pretrained(self) -> bool:
        """Whether the method starts from the shared pretrained checkpoint."""
        return self.algo in ("bc", "otpr", "dsrl", "ibrl")


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("bc", "bc", "behaviour cloning only: the pretrained diffusion actor, deterministic"),
        Method("otpr", "otpr", "OTPR-M: masked L2 dual, H guidance (the library's defaults)"),
        Method("otpr-u", "otpr", "OTPR-U: unmasked dual, H guidance", kwargs={"use_mask": False}),
        Method("otpr-q", "otpr", "Q guidance: exp(Q / spread) weights instead of H", policy_kwargs={"guidance": "q"}),
        Method(
            "otpr-adv",
            "otpr",
            "advantage guidance: exp((Q - V) / spread) weights instead of H",
            policy_kwargs={"guidance": "advantage"},
        ),
        Method(
            "idql",
            "otpr",
            "IDQL-style: IQL critic, expectile-weighted candidate selection, unweighted score matching",
            policy_kwargs={"guidance": "expectile"},
        ),
        Method(
            "idql-n",
            "otpr",
            "IDQL with its policy extraction at evaluation: the best of N = 8 candidates by the critic (greedy)",
            policy_kwargs={"guidance": "expectile", "eval_candidates": 8},
        ),
        Method(
            "otpr-authors",
            "otpr",
            "OTPR as the authors' release runs it: potentials on the relation cost alone, candidates ranked with -Q, "
            "plain diffusion loss, 10 candidates; the dual at lr 1e-5, batch 128, 10 steps per update (budgeted from "
            "their 1,000 per iteration)",
            kwargs={"dual_kwargs": {"learning_rate": 1e-5, "batch_size": 128, "steps": 10}},
            policy_kwargs={"guidance": "authors", "n_candidates": 10},
        ),
        Method(
            "dql",
            "otpr",
            "DQL-style: Q-gradient through the DDIM chain plus score matching (Diffusion-QL's eta = 1), IQL critic",
            policy_kwargs={"guidance": "dql"},
        ),
        Method(
            "dsrl",
            "dsrl",
            "DSRL: SAC over the initial noise (|w| <= 1.5) of the frozen pretrained diffusion actor, DDIM-decoded; "
            "no demonstrations in its replay (their noises are unknown)",
        ),
        Method(
            "ibrl",
            "ibrl",
            "IBRL: TD3 and the frozen pretrained diffusion actor both propose, min(Q1, Q2) picks for acting and for "
            "the target; demonstrations in a 50/50 replay",
        ),
        Method(
            "rlpd",
            "rlpd",
            "RLPD: SAC with 10 LayerNorm critics, targets from a random pair, the ensemble mean in the actor loss, "
            "4 updates per env step, demonstrations in a 50/50 replay; no hindsight relabelling",
            kwargs={"gradient_steps": 4},
        ),
        Method(
            "rlpd-her",
            "rlpd",
            "RLPD with hindsight relabelling (future goals, 80% of sampled transitions, demonstrations included); "
            "goal-conditioned tasks only",
            kwargs={"gradient_steps": 4},
            her=True,
        ),
        Method(
            "diffusion-ql",
            "otpr",
            "Diffusion-QL as its paper runs it: the dql actor loss (eta = 1), a Bellman critic on actions sampled "
            "from the actor, and collection by one actor sample (no candidate selection)",
            kwargs={"critic_backup": "policy"},
            policy_kwargs={"guidance": "dql", "n_candidates": 1},
        ),
        Method(
            "sac-demos",
            "sac",
            "SAC with the demonstrations kept in its replay buffer and 50/50 batches (RLPD-like, no ensemble)",
        ),
        Method(
            "otpr-her",
            "otpr",
            "OTPR (the library's defaults) with hindsight relabelling of its replay (future goals, 80% of sampled "
            "transitions, demonstrations included; the dual's states keep their goals); goal-conditioned tasks only",
            her=True,
        ),
    )
}


def get_method(name: str) -> Method:
    """Return the registered :class:`Method` called ``name``.

    Raises
    ------
    ValueError
        If there is no such method.
    """
    if name not in METHODS:
        raise ValueError(f"`method` must be one of {sorted(METHODS)}, got {name!r}")
    return METHODS[name]
