"""Record scripted-expert demonstrations as local Minari datasets, each with a dataset card."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from otpr_sb3.benchmark.experts import expert_for, run_expert
from otpr_sb3.benchmark.tasks import Task, get_task
from otpr_sb3.demonstrations import minari_datasets_path

CARD_FILE = "card.json"


@dataclass(frozen=True)
class DatasetCard:
    """What a recorded dataset holds: who made it, with how much noise, and how well they did.

    Attributes
    ----------
    dataset_id, env_id : str
    expert : str
        Name of the scripted expert.
    episodes : int
    noise : float
        Std of the Gaussian noise added to the expert's actions (then clipped to the action box).
    seed : int
        Episode ``k`` was reset with ``seed + k``; the noise came from ``numpy.random.default_rng(seed)``.
    success_rate : float
        The noisy demonstrators' success rate over the recorded episodes.
    transitions : int
    parts : list of dict
        For a mixed-quality dataset (:func:`record_mixed`): each part's ``episodes``, ``noise``, ``seed`` and
        ``success_rate``; ``noise`` is then their episode-weighted mean. Empty for a single setting.
    """

    dataset_id: str
    env_id: str
    expert: str
    episodes: int
    noise: float
    seed: int
    success_rate: float
    transitions: int
    parts: list[dict[str, Any]] = field(default_factory=list)  # a list, as JSON gives it back


def dataset_id_for(env_id: str, episodes: int, noise: float, seed: int, variant: str | None = None) -> str:
    """Return the default dataset id of a setting, e.g. ``otpr/fetchpush-100ep-noise30-s0-v0``.

    An expert variant enters the name before the episodes: ``otpr/fetchpickandplace-left-50ep-noise30-s0-v0``.
    """
    task = env_id.split("-")[0].lower() + ("" if variant is None else f"-{variant}")
    return f"otpr/{task}-{episodes}ep-noise{round(100 * noise)}-s{seed}-v0"


class _SuccessOnReset(gym.Wrapper):
    """Adds the success key to ``reset``'s info (Fetch omits it, which Minari's step-info check dislikes)."""

    def __init__(self, env: gym.Env, key: str) -> None:
        super().__init__(env)
        self.key = key

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:  # noqa: D102
        obs, info = self.env.reset(**kwargs)
        return obs, {self.key: np.array(False), **info}


def _dataset_dir(data_path: str, dataset_id: str) -> str:
    return os.path.join(data_path, *dataset_id.split("/"))


def _card_path(data_path: str, dataset_id: str) -> str:
    return os.path.join(_dataset_dir(data_path, dataset_id), CARD_FILE)


def record(
    env_id: str,
    episodes: int | None = None,
    noise: float | None = None,
    seed: int = 0,
    data_path: str = "outputs/minari",
    dataset_id: str | None = None,
    overwrite: bool = False,
    variant: str | None = None,
) -> DatasetCard:
    """Record the noisy scripted expert of a task into a local Minari dataset and write its card.

    Parameters
    ----------
    env_id : str
        A benchmark task (:data:`otpr_sb3.benchmark.tasks.TASKS`).
    episodes, noise : int, float, optional
        Episodes and action-noise std; default to the task's chosen demonstration setting.
    seed : int
    data_path : str
        Directory of the local Minari datasets.
    dataset_id : str, optional
        Default :func:`dataset_id_for` of the setting.
    overwrite : bool
        Re-record a dataset that exists; otherwise an existing dataset with a card is kept and its card returned.
    variant : str, optional
        One of the task's expert variants (:data:`otpr_sb3.benchmark.experts.EXPERT_VARIANTS`), e.g. ``"left"``.

    Returns
    -------
    DatasetCard
    """
    task = get_task(env_id)
    episodes = task.demo_episodes if episodes is None else int(episodes)
    noise = task.demo_noise if noise is None else float(noise)
    if episodes < 1:
        raise ValueError(f"`episodes` must be >= 1, got {episodes}")
    if not noise >= 0:
        raise ValueError(f"`noise` must be >= 0, got {noise}")
    data_path = os.path.abspath(data_path)
    dataset_id = dataset_id or dataset_id_for(env_id, episodes, noise, seed, variant)
    kept = None if overwrite else _kept_card(dataset_id, data_path, env_id)
    if kept is not None:
        return kept
    with minari_datasets_path(data_path):
        rate, total_steps, expert_name = _record_episodes(task, env_id, dataset_id, episodes, noise, seed, variant)
    card = DatasetCard(dataset_id, env_id, expert_name, episodes, noise, seed, rate, total_steps)
    with open(_card_path(data_path, dataset_id), "w") as f:
        json.dump(asdict(card), f, indent=1)
    return card


def _record_episodes(
    task: Task, env_id: str, dataset_id: str, episodes: int, noise: float, seed: int, variant: str | None
) -> tuple[float, int, str]:
    """Record the noisy expert into the Minari dataset ``dataset_id``; return its success rate, steps and name."""
    import minari

    if dataset_id in minari.list_local_datasets():
        minari.delete_dataset(dataset_id)
    env = task.make_env()
    expert = expert_for(env, variant)
    collector = minari.DataCollector(_SuccessOnReset(env, task.success_key), record_infos=False)
    rate = run_expert(collector, expert, episodes, noise, seed, task.success_key, task.noise_dims)
    expert_name = getattr(expert, "__name__", type(expert).__name__)
    dims = "" if task.noise_dims is None else f" on action dimensions {list(task.noise_dims)}"
    dataset = collector.create_dataset(
        dataset_id=dataset_id,
        eval_env=env_id,
        algorithm_name=f"{expert_name} + N(0, {noise}^2) action noise{dims}",
        author="otpr_sb3.benchmark",
        author_email="otpr@example.com",
        code_permalink="https://example.com/otpr",
        description=f"{episodes} episodes of {env_id}'s scripted expert ({expert_name}) with Gaussian action noise of "
        f"std {noise}{dims}, seed {seed}; demonstrators' success rate {rate:.3f}.",
    )
    return rate, int(dataset.total_steps), expert_name


def _kept_card(dataset_id: str, data_path: str, env_id: str) -> DatasetCard | None:
    """Return the card of a recorded dataset that ``record`` keeps, or None if there is none.

    Raises
    ------
    ValueError
        If the kept dataset holds another task's demonstrations: a task's new version keeps its dataset names
        (``RobosuiteLift-v1`` -> ``-v2``).
    """
    if not os.path.exists(_card_path(data_path, dataset_id)):
        return None
    card = load_card(dataset_id, data_path)
    if card.env_id != env_id:
        raise ValueError(
            f"`dataset_id` {dataset_id!r} in {data_path} holds {card.env_id} demonstrations, not {env_id}'s; "
            "record with overwrite=True (`otpr record --overwrite`) or another dataset id"
        )
    return card


def load_card(dataset_id: str, data_path: str = "outputs/minari") -> DatasetCard:
    """Read the card of a recorded dataset.

    Raises
    ------
    FileNotFoundError
        If the dataset (or its card) is not in ``data_path``.
    """
    path = _card_path(os.path.abspath(data_path), dataset_id)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no dataset card for `dataset` {dataset_id!r} in {data_path}; record it with `otpr record`")
    with open(path) as f:
        return DatasetCard(**json.load(f))


Part = tuple[int, float] | tuple[int, float, str]


def _part(part: Part) -> tuple[int, float, str | None]:
    """``(episodes, noise)`` or ``(episodes, noise, variant)`` as a triple."""
    return (int(part[0]), float(part[1]), part[2] if len(part) == 3 else None)


def mixed_dataset_id(env_id: str, parts: list[Part], seed: int) -> str:
    """``otpr/<task>-mix-<episodes>ep-noise<pct>[-<variant>]-...-s<seed>-v0``."""
    body = "-".join(
        f"{n}ep-noise{round(100 * noise)}" + ("" if variant is None else f"-{variant}")
        for n, noise, variant in map(_part, parts)
    )
    return f"otpr/{env_id.split('-')[0].lower()}-mix-{body}-s{seed}-v0"


def record_mixed(
    env_id: str,
    parts: list[Part],
    seed: int = 0,
    data_path: str = "outputs/minari",
    dataset_id: str | None = None,
    overwrite: bool = False,
) -> DatasetCard:
    """Record a mixed dataset: parts of ``(episodes, noise[, variant])``, each its own dataset, combined by Minari.

    Part ``k`` is recorded with seed ``seed + 1000 k`` (so the parts reset to different initial states) and kept as a
    dataset of its own; ``minari.combine_datasets`` joins them in order.

    Parameters
    ----------
    env_id : str
    parts : list of (int, float) or (int, float, str)
        Episodes and action-noise std of each part, e.g. ``[(50, 0.1), (50, 1.0)]`` (mixed quality), and optionally
        the expert variant, e.g. ``[(50, 0.3, "left"), (50, 0.3, "right")]`` (multimodal).
    seed, data_path, dataset_id, overwrite
        As :func:`record` (``dataset_id`` defaults to :func:`mixed_dataset_id`).
    """
    import minari

    if len(parts) < 2:
        raise ValueError(f"`parts` must have at least two (episodes, noise) settings, got {parts!r}")
    data_path = os.path.abspath(data_path)
    dataset_id = dataset_id or mixed_dataset_id(env_id, parts, seed)
    kept = None if overwrite else _kept_card(dataset_id, data_path, env_id)
    if kept is not None:
        return kept
    cards = [
        record(env_id, n, noise, seed + 1000 * k, data_path, overwrite=overwrite, variant=variant)
        for k, (n, noise, variant) in enumerate(map(_part, parts))
    ]
    with minari_datasets_path(data_path):
        if dataset_id in minari.list_local_datasets():
            minari.delete_dataset(dataset_id)
        combined = minari.combine_datasets([minari.load_dataset(c.dataset_id) for c in cards], dataset_id)
    episodes = sum(c.episodes for c in cards)
    card = DatasetCard(
        dataset_id,
        env_id,
        cards[0].expert if len({c.expert for c in cards}) == 1 else " + ".join(c.expert for c in cards),
        episodes,
        sum(c.episodes * c.noise for c in cards) / episodes,
        seed,
        sum(c.episodes * c.success_rate for c in cards) / episodes,
        int(combined.total_steps),
        [
            {"episodes": c.episodes, "noise": c.noise, "seed": c.seed, "success_rate": c.success_rate, "expert": c.expert}
            for c in cards
        ],
    )
    with open(_card_path(data_path, dataset_id), "w") as f:
        json.dump(asdict(card), f, indent=1)
    return card
