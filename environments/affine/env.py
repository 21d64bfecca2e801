"""Affine-style reasoning environment that runs fully offline.

Each call to ``Actor.evaluate`` generates small, seeded tasks, answers them
with a built-in baseline policy (no LLM: containers have no network) and
scores the answers the way a model's answers would be scored:

- ``sat``: random 3-SAT formulas, kept only if the DPLL solver below finds
  them satisfiable; the baseline is WalkSAT with a small flip budget, so it
  sometimes fails.
- ``abd`` (abduction): given a small program and its output, find an input.
  The baseline brute-forces only part of the input range.
- ``ded`` (deduction): given a program and an input, predict the output.
  The baseline misreads ``^`` (XOR) as a power, a classic slip.

Only ``task_types`` and ``Actor`` are public: the runtime turns every public
module-level function into a callable method, so helpers start with ``_``.
Pure standard library, Python >= 3.9.
"""

from __future__ import annotations

import os
import random
import re
import time

_TASK_TYPES = ("sat", "abd", "ded")


def task_types() -> list:
    """The ``task_type`` values ``Actor.evaluate`` accepts."""
    return list(_TASK_TYPES)


class Actor:
    def __init__(self):
        # Only a remote LLM policy would need the key. None is configured
        # offline, so it is merely kept (privately, never printed or returned).
        self._api_key = os.environ.get("CHUTES_API_KEY") or None

    async def evaluate(
        self, task_type: str = "sat", num_samples: int = 1, seed: int = 0, **kwargs
    ) -> dict:
        """Generate ``num_samples`` tasks of ``task_type`` from ``seed``, answer and score them.

        Knobs (optional kwargs): ``n_vars``, ``clause_ratio``, ``max_flips`` for sat;
        ``search_budget`` for abd. Other kwargs (e.g. a model name) are ignored offline.
        """
        if task_type not in _MAKERS:
            raise ValueError(
                f"unknown task_type {task_type!r}; choose one of: {', '.join(_TASK_TYPES)}"
            )
        if not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples must be a positive int, got {num_samples!r}")
        started = time.perf_counter()
        samples = []
        for i in range(num_samples):
            # A string seed hashes the same in every process (unlike hash()).
            rng = random.Random(f"affine:{task_type}:{seed}:{i}")
            samples.append({"id": f"{task_type}-{seed}-{i}", **_MAKERS[task_type](rng, **kwargs)})
        total = sum(s["score"] for s in samples)
        return {
            "task_type": task_type,
            "num_samples": num_samples,
            "seed": seed,
            "policy": "baseline",
            "total_score": total,
            "average_score": total / num_samples,
            "samples": samples,
            "elapsed_s": round(time.perf_counter() - started, 6),
        }


# --- sat --------------------------------------------------------------------
# A clause is a list of non-zero ints: 3 means x3, -3 means NOT x3.


def _dpll(clauses: list, assignment: dict | None = None) -> dict | None:
    """A satisfying {var: bool} (unmentioned vars are free), or None."""
    assignment = dict(assignment or {})
    while True:  # unit propagation
        remaining, unit = [], None
        for clause in clauses:
            if any(assignment.get(abs(lit)) == (lit > 0) for lit in clause):
                continue
            open_lits = [lit for lit in clause if abs(lit) not in assignment]
            if not open_lits:
                return None
            if len(open_lits) == 1:
                unit = open_lits[0]
            remaining.append(open_lits)
        if unit is None:
            break
        assignment[abs(unit)] = unit > 0
    if not remaining:
        return assignment
    var = abs(remaining[0][0])
    for value in (True, False):
        found = _dpll(remaining, {**assignment, var: value})
        if found is not None:
            return found
    return None


def _satisfied(clause: list, assignment: dict) -> bool:
    return any(assignment.get(abs(lit)) == (lit > 0) for lit in clause)


def _walksat(clauses: list, n_vars: int, rng: random.Random, max_flips: int) -> dict:
    """Local search: flip a variable of a random unsatisfied clause, greedily or at random."""
    assignment = {v: rng.random() < 0.5 for v in range(1, n_vars + 1)}
    for _ in range(max_flips):
        unsat = [c for c in clauses if not _satisfied(c, assignment)]
        if not unsat:
            break
        clause = rng.choice(unsat)
        if rng.random() < 0.4:
            var = abs(rng.choice(clause))
        else:
            var = min(
                (abs(lit) for lit in clause),
                key=lambda v: _unsat_after_flip(clauses, assignment, v),
            )
        assignment[var] = not assignment[var]
    return assignment


def _unsat_after_flip(clauses: list, assignment: dict, var: int) -> int:
    flipped = {**assignment, var: not assignment[var]}
    return sum(not _satisfied(c, flipped) for c in clauses)


def _format_assignment(assignment: dict, n_vars: int) -> str:
    return " ".join(f"x{v}={int(bool(assignment.get(v)))}" for v in range(1, n_vars + 1))


def _score_sat(clauses: list, response: str) -> float:
    """1.0 if the ``x1=1 x2=0 ...`` response satisfies every clause, else 0.0."""
    assignment = {
        int(var): value.lower() in ("1", "true")
        for var, value in re.findall(r"x(\d+)\s*=\s*(0|1|true|false)", response, re.IGNORECASE)
    }
    return 1.0 if all(_satisfied(c, assignment) for c in clauses) else 0.0


def _make_sat(
    rng: random.Random, n_vars: int = 10, clause_ratio: float = 4.2, max_flips: int = 6, **_
) -> dict:
    n_clauses = round(n_vars * clause_ratio)
    for _attempt in range(1000):  # near the 4.26 threshold about half are satisfiable
        clauses = [
            [v if rng.random() < 0.5 else -v for v in rng.sample(range(1, n_vars + 1), 3)]
            for _ in range(n_clauses)
        ]
        solution = _dpll(clauses)
        if solution is not None:
            break
    else:
        raise RuntimeError(
            f"no satisfiable formula with {n_vars} vars / {n_clauses} clauses in 1000 tries"
        )
    formula = " & ".join(
        "(" + " | ".join(f"x{lit}" if lit > 0 else f"~x{-lit}" for lit in c) + ")" for c in clauses
    )
    prompt = (
        f"Find a truth assignment for x1..x{n_vars} that satisfies this 3-SAT formula:\n{formula}\n"
        f"Answer as: x1=0 x2=1 ... (1 for true, 0 for false)."
    )
    response = _format_assignment(_walksat(clauses, n_vars, rng, max_flips), n_vars)
    return {
        "prompt": prompt,
        "response": response,
        "score": _score_sat(clauses, response),
        "reference": _format_assignment(solution, n_vars),
        "clauses": clauses,
    }


# --- abd / ded: small straight-line programs ---------------------------------


def _random_program(rng: random.Random, with_mod: bool) -> list:
    """A list of [operator, constant] steps applied to x in order."""
    ranges = {"+": (1, 20), "-": (1, 20), "*": (2, 5), "^": (1, 15)}
    steps = []
    for _ in range(rng.randint(3, 5)):
        op = rng.choice(sorted(ranges))
        steps.append([op, rng.randint(*ranges[op])])
    if with_mod:  # keeps outputs small, and makes many inputs share an output
        steps.append(["%", rng.randint(7, 97)])
    return steps


def _run_program(steps: list, x: int, misread_xor: bool = False) -> int:
    for op, k in steps:
        if op == "+":
            x += k
        elif op == "-":
            x -= k
        elif op == "*":
            x *= k
        elif op == "^":
            x = x**k if misread_xor else x ^ k
        else:
            x %= k
    return x


def _render_program(steps: list) -> str:
    body = "".join(f"    x = x {op} {k}\n" for op, k in steps)
    return f"def f(x):\n{body}    return x"


def _parse_int(response: str) -> int | None:
    match = re.search(r"-?\d+", response)
    return int(match.group()) if match else None


def _score_abd(steps: list, output: int, input_range: int, response: str) -> float:
    """1.0 if the response is an in-range input that makes the program print ``output``."""
    x = _parse_int(response)
    return (
        1.0 if x is not None and 0 <= x < input_range and _run_program(steps, x) == output else 0.0
    )


def _score_ded(expected: int, response: str) -> float:
    return 1.0 if _parse_int(response) == expected else 0.0


def _make_abd(rng: random.Random, search_budget: int = 100, **_) -> dict:
    input_range = 200
    steps = _random_program(rng, with_mod=False)
    secret = rng.randrange(input_range)
    output = _run_program(steps, secret)
    prompt = (
        f"{_render_program(steps)}\n\nFind an integer x with 0 <= x < {input_range} such that"
        f" f(x) == {output}. Answer with the integer only."
    )
    # Every step is invertible, so the baseline wins only if the secret lies
    # within its search budget.
    guess = next((x for x in range(search_budget) if _run_program(steps, x) == output), 0)
    response = str(guess)
    return {
        "prompt": prompt,
        "response": response,
        "score": _score_abd(steps, output, input_range, response),
        "reference": str(secret),
        "program": steps,
        "output": output,
    }


def _make_ded(rng: random.Random, **_) -> dict:
    steps = _random_program(rng, with_mod=True)
    x = rng.randrange(100)
    expected = _run_program(steps, x)
    prompt = f"{_render_program(steps)}\n\nWhat does f({x}) return? Answer with the integer only."
    response = str(_run_program(steps, x, misread_xor=True))
    return {
        "prompt": prompt,
        "response": response,
        "score": _score_ded(expected, response),
        "reference": str(expected),
        "program": steps,
        "input": x,
    }


_MAKERS = {"sat": _make_sat, "abd": _make_abd, "ded": _make_ded}
