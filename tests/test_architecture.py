"""The package's structure: one-way imports without cycles, small modules and functions, and the guidance interface
shown in docs/design.rst (a guidance added from outside trains, saves and loads)."""

import ast
import importlib.util
import pathlib

import numpy as np
import pytest
import torch as th
from otpr_helpers import IdentityEnvBox, fast

from otpr_sb3 import OTPR
from otpr_sb3.guidance import GUIDANCES, Guidance, make_guidance, register_guidance

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("otpr_sb3", "neural_ot")


def _modules() -> dict[str, pathlib.Path]:
    out = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(name: str, path: pathlib.Path, modules: dict[str, pathlib.Path]) -> set[str]:
    """Modules of the packages that ``name`` imports, at run time or only for type checking."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert not node.level, f"{name}: relative import (the packages use absolute imports)"
            base = node.module or ""
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def test_no_import_cycles_and_neural_ot_never_imports_otpr_sb3():
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    for name, deps in graph.items():
        if name.startswith("neural_ot"):
            assert not any(d.startswith("otpr_sb3") for d in deps), name
    # A package imports its submodules to re-export them; a cycle is a module reached again from its own imports
    # through modules that are not the package's own __init__ chain.
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if node.startswith(dep + "."):  # a submodule importing its package's __init__ (re-exports only)
                continue
            if state.get(dep) == 1:
                pytest.fail(f"import cycle: {' -> '.join([*stack, node, dep])}")
            if dep not in state:
                visit(dep, [*stack, node])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [])


def _code_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines of a function from its signature to its end, its docstring left out (documentation is not logic)."""
    size = node.end_lineno - node.lineno + 1
    first = node.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        size -= first.end_lineno - first.lineno + 1
    return size


def test_modules_and_functions_are_small():
    for path in _modules().values():
        lines = path.read_text().count("\n")
        assert lines <= 450, f"{path.relative_to(ROOT)} has {lines} lines (at most 450)"
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                size = _code_lines(node)
                assert size <= 60, f"{path.relative_to(ROOT)}:{node.name} has {size} lines of code (at most 60)"


def _custom_guidance_module():
    spec = importlib.util.spec_from_file_location("custom_guidance", ROOT / "examples" / "custom_guidance.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_guidance_added_from_outside_trains_saves_and_loads(tmp_path):
    module = _custom_guidance_module()
    assert GUIDANCES["top-k-advantage"] is module.TopKAdvantage
    kwargs = fast(policy_kwargs={"guidance": "top-k-advantage", "guidance_kwargs": {"k": 2}})
    model = OTPR("MlpPolicy", IdentityEnvBox(ep_length=20), seed=0, **kwargs)
    model.learn(80)
    policy = model.policy
    assert bool(policy.guidance.ready) and model.dual_updates > 0
    obs = th.linspace(-1, 1, 3)[:, None]
    acts = th.linspace(-1, 1, 5).repeat(3, 1)[..., None]
    adv, w = policy.guidance.grouped_weights(policy, obs, acts)
    assert w.shape == (3, 5) and th.equal(w.sum(1), th.full((3,), 2.0))  # the two best of five per state
    assert th.equal(w > 0, adv >= adv.topk(2, dim=1).values[:, -1:])
    model.save(tmp_path / "m")
    loaded = OTPR.load(tmp_path / "m", env=IdentityEnvBox(ep_length=20))
    assert isinstance(loaded.policy.guidance, module.TopKAdvantage) and loaded.policy.guidance.k == 2
    grid = np.linspace(-1, 1, 7, dtype=np.float32)[:, None]
    np.testing.assert_array_equal(model.predict(grid, deterministic=True)[0], loaded.predict(grid, deterministic=True)[0])


def test_the_registry_refuses_what_is_not_a_guidance():
    with pytest.raises(TypeError, match="Guidance subclass with a `name`"):
        register_guidance(dict)

    class Nameless(Guidance):
        def scores(self, policy, obs_n, actions, n_reference=None):
            return actions.sum(1), actions.sum(1)

    with pytest.raises(TypeError, match="with a `name`"):
        register_guidance(Nameless)
    with pytest.raises(ValueError, match="`guidance` must be one of"):
        make_guidance("nope", 1, 1, None)
    with pytest.raises(ValueError, match=r"\['eta'\] are not parameters of the 'q' guidance"):
        make_guidance("q", 1, 1, None, eta=1.0)


def test_a_guidance_without_scores_says_so():
    class Unfinished(Guidance):
        name = "unfinished"

    with pytest.raises(NotImplementedError, match="Unfinished must implement `scores`"):
        Unfinished(1, 1).scores(None, th.zeros(2, 1), th.zeros(2, 1))
