"""mathquiz: a multi-turn math-problem episode, checked symbolically with SymPy.

The episode pattern (the one ``rayfine init --type episode`` scaffolds):

* ``reset(seed, problems, level)`` starts an episode and returns the first problem;
* ``step(answer)`` answers the current problem: a wrong answer gets feedback and
  one more attempt; the reply carries the next problem (or ``done``);
* ``score()`` sums the episode up: 1 point per problem solved at the first
  attempt, 0.5 at the second, averaged.

Answers are checked for mathematical equality, not text: ``2*x + 2``,
``2(x+1)`` and ``2x+2`` are the same derivative.  An answer is model output,
so it is parsed only after a character check (digits, letters, operators,
parentheses), which keeps SymPy's parser away from Python code.

One Actor is one episode.  Today each container holds one Actor: start one
environment per concurrent episode (``aload_envs``), or play episodes one
after another with ``reset``.  With sessions, ``env.session()`` gives each
episode its own Actor in a shared container; this file does not change.
"""

import os
import random
import re
from typing import Optional

import sympy
from sympy.parsing.sympy_parser import (
    convert_xor,
    implicit_multiplication_application,
    parse_expr,
    standard_transformations,
)

X = sympy.Symbol("x")
LEVELS = ("easy", "hard")
KINDS = ("solve", "differentiate", "factor", "integrate")
MAX_ANSWER = 200
_ALLOWED = re.compile(r"[0-9A-Za-z+\-*/^().,= ]*")
_TRANSFORMS = (*standard_transformations, implicit_multiplication_application, convert_xor)
_NAMES = {
    "x": X,
    "sin": sympy.sin,
    "cos": sympy.cos,
    "exp": sympy.exp,
    "log": sympy.log,
    "sqrt": sympy.sqrt,
    "pi": sympy.pi,
    "E": sympy.E,
}


class Problem:
    """One question, its answer, and how an answer is judged."""

    def __init__(self, kind: str, text: str, solution: sympy.Expr, hint: str) -> None:
        self.kind, self.text, self.solution, self.hint = kind, text, solution, hint

    def judge(self, answer: sympy.Expr) -> bool:
        if self.kind == "integrate":  # any antiderivative: its derivative is the integrand
            return sympy.simplify(sympy.diff(answer, X) - self.solution) == 0
        if self.kind == "factor":  # equal, and written as a product
            product = isinstance(answer, (sympy.Mul, sympy.Pow))
            return product and sympy.expand(answer - self.solution) == 0
        return sympy.simplify(answer - self.solution) == 0


class Actor:
    """One episode of math problems."""

    def __init__(self) -> None:
        # Settings come from environment variables: env_vars={"MATHQUIZ_ATTEMPTS": "3"}.
        self.attempts_allowed = int(os.environ.get("MATHQUIZ_ATTEMPTS", "2"))
        if self.attempts_allowed < 1:
            raise ValueError("MATHQUIZ_ATTEMPTS must be at least 1")
        self.problems: list[Problem] = []
        self.index = 0
        self.attempts = 0
        self.rewards: list[float] = []

    def reset(self, seed: int = 0, problems: int = 3, level: str = "easy") -> dict:
        """Start an episode of ``problems`` problems (1-20) at ``level`` ("easy" or "hard")."""
        if not 1 <= problems <= 20:
            raise ValueError("problems must be between 1 and 20")
        if level not in LEVELS:
            raise ValueError(f"level must be one of {', '.join(LEVELS)}")
        rng = random.Random(f"{seed}:{level}")
        self.problems = [_make(rng.choice(KINDS), rng, level) for _ in range(problems)]
        self.index, self.attempts, self.rewards = 0, 0, []
        print(f"mathquiz: episode seed={seed} problems={problems} level={level}", flush=True)
        return {"observation": self._ask(), "problem": 1, "of": problems, "done": False}

    def step(self, answer: str) -> dict:
        """Answer the current problem with an expression or a number, e.g. ``3*x**2 + 2``."""
        if not self.problems:
            raise RuntimeError("call reset() before step()")
        if self.index >= len(self.problems):
            raise RuntimeError("the episode is over: call score(), or reset() for another")
        problem = self.problems[self.index]
        self.attempts += 1
        parsed, problem_with_it = _parse(answer)
        correct = parsed is not None and problem.judge(parsed)
        if correct or self.attempts >= self.attempts_allowed:
            reward = (1.0 / self.attempts) if correct else 0.0
            self.rewards.append(reward)
            self.index, self.attempts = self.index + 1, 0
            done = self.index >= len(self.problems)
            verdict = "Correct." if correct else f"Not quite: one answer is {problem.solution}."
            observation = verdict if done else f"{verdict} Next: {self._ask()}"
            return {"observation": observation, "reward": reward, "done": done, "correct": correct}
        feedback = problem_with_it or f"Not equal to the answer. Hint: {problem.hint} Try again."
        return {"observation": feedback, "reward": 0.0, "done": False, "correct": False}

    def score(self) -> dict:
        """The episode so far: problems solved, and the mean reward over all its problems."""
        total = len(self.problems)
        return {
            "solved": sum(1 for r in self.rewards if r > 0),
            "answered": len(self.rewards),
            "problems": total,
            "score": round(sum(self.rewards) / total, 4) if total else 0.0,
        }

    def _ask(self) -> str:
        return self.problems[self.index].text


def _parse(answer: str) -> tuple[Optional[sympy.Expr], str]:
    """The answer as an expression, or None and what is wrong with it."""
    text = str(answer).strip()
    if "=" in text:  # "x = 3" -> "3"
        text = text.rsplit("=", 1)[1].strip()
    if not text:
        return None, "The answer is empty. Answer with an expression or a number."
    if len(text) > MAX_ANSWER or not _ALLOWED.fullmatch(text):
        return None, (
            "Answer with a plain expression: digits, x, + - * / ^ ( ), and sin, cos, exp, log,"
            " sqrt."
        )
    try:
        parsed = parse_expr(text, local_dict=dict(_NAMES), transformations=_TRANSFORMS)
    except (SyntaxError, TypeError, ValueError, AttributeError, sympy.SympifyError):
        return None, f"{text!r} does not parse as an expression. Try again."
    if not isinstance(parsed, sympy.Expr):
        return None, f"{text!r} is not an expression. Try again."
    unknown = parsed.free_symbols - {X}
    if unknown:
        names = ", ".join(sorted(str(s) for s in unknown))
        return None, f"Only x may appear in the answer, not {names}. Try again."
    return parsed, ""


def _make(kind: str, rng: random.Random, level: str) -> Problem:
    big = 12 if level == "hard" else 6

    def coefficient() -> int:
        return rng.choice([n for n in range(-big, big + 1) if n != 0])

    if kind == "solve":
        a, b, c = coefficient(), coefficient(), coefficient()
        solution = sympy.Rational(c - b, a)
        return Problem(
            kind,
            f"Solve for x: {a * X + b} = {c}. Answer with the value of x.",
            solution,
            "Move the constant to the right-hand side, then divide by the coefficient of x.",
        )
    if kind == "differentiate":
        a, b, n = coefficient(), coefficient(), rng.randint(2, 4 if level == "hard" else 3)
        f = a * X**n + b * X + (sympy.sin(X) if level == "hard" else 0)
        return Problem(
            kind,
            f"Differentiate with respect to x: f(x) = {f}.",
            sympy.diff(f, X),
            "d/dx x^n = n*x^(n-1); the derivative of sin(x) is cos(x).",
        )
    if kind == "factor":
        r, s = coefficient(), coefficient()
        return Problem(
            kind,
            f"Factor completely: {sympy.expand((X - r) * (X - s))}.",
            (X - r) * (X - s),
            f"Find two numbers whose product is {r * s} and whose sum is {r + s}.",
        )
    a, n = coefficient(), rng.randint(1, 3)
    integrand = a * X**n + (sympy.cos(X) if level == "hard" else coefficient())
    return Problem(
        "integrate",
        f"Find an antiderivative with respect to x of {integrand} (any constant).",
        integrand,
        "The antiderivative of x^n is x^(n+1)/(n+1); of cos(x), sin(x).",
    )
