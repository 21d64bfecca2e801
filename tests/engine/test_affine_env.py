"""Unit tests for the offline Affine-style example environment.

env.py is loaded by path, as the runtime loads it inside a container: it is
not an installed package.
"""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import json
from pathlib import Path

import pytest

ENV_FILE = Path(__file__).resolve().parents[2] / "environments" / "affine" / "env.py"


@pytest.fixture(scope="module")
def env():
    spec = importlib.util.spec_from_file_location("rayfine_affine_env", ENV_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _evaluate(env, **kwargs) -> dict:
    return asyncio.run(env.Actor().evaluate(**kwargs))


def _without_timing(result: dict) -> dict:
    return {k: v for k, v in result.items() if k != "elapsed_s"}


@pytest.mark.parametrize("task_type", ["sat", "abd", "ded"])
def test_same_seed_same_output(env, task_type):
    first = _evaluate(env, task_type=task_type, num_samples=4, seed=7)
    second = _evaluate(env, task_type=task_type, num_samples=4, seed=7)
    assert _without_timing(first) == _without_timing(second)
    other = _evaluate(env, task_type=task_type, num_samples=4, seed=8)
    assert [s["prompt"] for s in other["samples"]] != [s["prompt"] for s in first["samples"]]


@pytest.mark.parametrize("task_type", ["sat", "abd", "ded"])
def test_result_shape_and_baseline_is_not_trivial(env, task_type):
    result = _evaluate(env, task_type=task_type, num_samples=30, seed=1)
    json.dumps(result)  # crosses a process boundary as JSON
    assert result["task_type"] == task_type and result["num_samples"] == 30
    assert {"id", "prompt", "response", "score"} <= set(result["samples"][0])
    assert result["total_score"] == sum(s["score"] for s in result["samples"])
    # A baseline that always wins or always loses would not exercise scoring.
    assert 0.0 < result["average_score"] < 1.0


def test_sat_scoring(env):
    clauses = [[1, 2, -3], [-1, 3, 2], [-2, -3, 1]]
    assert env._score_sat(clauses, "x1=1 x2=1 x3=1") == 1.0
    assert env._score_sat(clauses, "x1=0 x2=1 x3=1") == 0.0  # breaks the last clause
    assert env._score_sat(clauses, "no idea") == 0.0


def test_sat_reference_solution_scores_one(env):
    for sample in _evaluate(env, task_type="sat", num_samples=10, seed=3)["samples"]:
        assert env._score_sat(sample["clauses"], sample["reference"]) == 1.0
        assert sample["score"] == env._score_sat(sample["clauses"], sample["response"])


def test_dpll_detects_unsatisfiable(env):
    contradiction = [[1, 1, 1], [-1, -1, -1]]
    assert env._dpll(contradiction) is None
    assert env._dpll([[1, 2, 3], [-1, -2, -3]]) is not None


def test_abd_and_ded_scoring(env):
    abd = _evaluate(env, task_type="abd", seed=5)["samples"][0]
    assert env._score_abd(abd["program"], abd["output"], 200, abd["reference"]) == 1.0
    wrong = next(x for x in range(200) if env._run_program(abd["program"], x) != abd["output"])
    assert env._score_abd(abd["program"], abd["output"], 200, str(wrong)) == 0.0

    ded = _evaluate(env, task_type="ded", seed=5)["samples"][0]
    assert env._score_ded(int(ded["reference"]), ded["reference"]) == 1.0
    assert env._score_ded(int(ded["reference"]), str(int(ded["reference"]) + 1)) == 0.0


def test_unknown_task_type_lists_valid_ones(env):
    with pytest.raises(ValueError, match="sat, abd, ded"):
        _evaluate(env, task_type="nope")


def test_only_task_types_is_a_public_function(env):
    # Public module-level functions become remote methods of the environment.
    public = [n for n, v in vars(env).items() if inspect.isfunction(v) and not n.startswith("_")]
    assert public == ["task_types"]
    assert env.task_types() == ["sat", "abd", "ded"]


def test_api_key_is_never_returned(env, monkeypatch):
    monkeypatch.setenv("CHUTES_API_KEY", "sk-secret-test-value")
    result = asyncio.run(env.Actor().evaluate(task_type="ded", num_samples=2))
    assert "sk-secret-test-value" not in json.dumps(result)
