"""The files ``rayfine init`` writes; ``{name}`` and ``{tag}`` are filled in, ``{{`` is ``{``."""

FUNCTION_ENV = '''\
"""{name}: a Rayfine environment.

The public methods of ``Actor`` (and public module-level functions) can be
called from the host; arguments and results travel as JSON.  Helpers whose
names start with ``_`` stay private.

    rayfine build {name} -t {tag}
    rayfine run {tag} --name {name}
    rayfine call {name} evaluate --arg answer=Paris
    rayfine stop {name}
"""

import os
from typing import Optional


class Actor:
    """Created once per container, when the server starts."""

    def __init__(self) -> None:
        # Settings come from environment variables: `rayfine run ... --env EXPECTED=Rome`.
        self.expected = os.environ.get("EXPECTED", "Paris")
        self.calls = 0
        print(f"{name}: ready, expecting {{self.expected!r}}", flush=True)  # see `rayfine logs {name}`

    def hello(self, name: str = "world") -> str:
        """Return a greeting for ``name``."""
        return f"hello, {{name}}!"

    async def evaluate(self, answer: str, expected: Optional[str] = None) -> dict:
        """Score ``answer``: 1.0 if it equals ``expected`` (ignoring case and spaces), else 0.0.

        ``expected`` defaults to the EXPECTED environment variable ("Paris").
        An exception raised here reaches the caller with its traceback.
        """
        if not str(answer).strip():
            raise ValueError("answer is empty")
        self.calls += 1
        target = self.expected if expected is None else expected
        score = 1.0 if _normalise(answer) == _normalise(target) else 0.0
        return {{"answer": answer, "expected": target, "score": score, "calls": self.calls}}


def _normalise(text: object) -> str:
    return str(text).strip().lower()
'''

FUNCTION_README = """\
# {name}

A function-based Rayfine environment: `env.py` defines an
`Actor` whose public methods are called from the host over HTTP.

```sh
rayfine build {name} -t {tag}          # image = your code + Rayfine's server
rayfine run {tag} --name {name}        # starts it and leaves it running
rayfine methods {name}                 # what can be called, with docstrings
rayfine call {name} evaluate --arg answer=Paris
rayfine logs {name}
rayfine stop {name}
```

From Python:

```python
import rayfine_core as rf

with rf.load_env("{tag}") as env:
    print(env.evaluate(answer="Paris"))
```

## Files

- `env.py`: the environment; only the standard library, so it builds offline.
- Dependencies: list them in `requirements.txt`. The build installs them before
  it copies your code (an edit to env.py rebuilds in about a second), from
  `wheels/` when it holds wheels (no package index needed: `rayfine wheels {name}`
  downloads them on this host), else from the package index. For full control,
  add a `Dockerfile` starting with `ARG RAYFINE_BASE_IMAGE` / `FROM ${{RAYFINE_BASE_IMAGE}}`.
- Edit with no rebuild: `rayfine dev {name}` runs the directory itself; saving
  env.py makes the change live in about a second.
- Settings and secrets: environment variables (`rayfine run --env KEY=value`),
  read in `Actor.__init__`.
"""

HTTP_ENV = '''\
"""{name}: an HTTP-based Rayfine environment (a FastAPI app).

Every POST route is a method: ``rayfine call {name} evaluate --arg answer=Paris``
posts ``{{"answer": "Paris"}}`` to ``/evaluate``.  The image's CMD serves the app
on 0.0.0.0:8000 (see Dockerfile).
"""

import os
from typing import Optional

from fastapi import FastAPI
from pydantic import BaseModel

app = FastAPI(title="{name}")
EXPECTED = os.environ.get("EXPECTED", "Paris")


class EvaluateRequest(BaseModel):
    answer: str
    expected: Optional[str] = None


class EvaluateResult(BaseModel):
    answer: str
    expected: str
    score: float


@app.get("/health")
def health() -> dict:
    """Rayfine polls this until the app is ready."""
    return {{"status": "ok"}}


@app.post("/evaluate", response_model=EvaluateResult)
def evaluate(request: EvaluateRequest) -> EvaluateResult:
    """Score ``answer``: 1.0 if it equals ``expected`` (ignoring case and spaces), else 0.0."""
    target = EXPECTED if request.expected is None else request.expected
    score = 1.0 if request.answer.strip().lower() == target.strip().lower() else 0.0
    return EvaluateResult(answer=request.answer, expected=target, score=score)
'''

HTTP_DOCKERFILE = """\
# An HTTP-based Rayfine environment: the image's CMD serves env.py's app.
ARG RAYFINE_BASE_IMAGE=python:3.11-slim
FROM ${{RAYFINE_BASE_IMAGE}}
WORKDIR /app
COPY . /app
# requirements.txt goes to /opt/site: from wheels/ when it holds wheels (no
# package index needed; see README.md), else from the package index.
RUN if ls wheels/*.whl >/dev/null 2>&1; then \\
        python3 -m pip install --no-cache-dir --disable-pip-version-check --no-index \\
            --find-links wheels --target /opt/site -r requirements.txt; \\
    else \\
        python3 -m pip install --no-cache-dir --disable-pip-version-check \\
            --target /opt/site -r requirements.txt; \\
    fi
ENV PYTHONPATH=/opt/site PYTHONUNBUFFERED=1
EXPOSE 8000
CMD ["python3", "-m", "uvicorn", "env:app", "--host", "0.0.0.0", "--port", "8000"]
"""

HTTP_README = """\
# {name}

An HTTP-based Rayfine environment: `env.py` is a FastAPI
app, and every POST route is a method called with a JSON body.

```sh
rayfine build {name} -t {tag}
rayfine run {tag} --name {name}
rayfine methods {name}
rayfine call {name} evaluate --arg answer=Paris
rayfine stop {name}
```

## Dependencies without a package index

The Dockerfile installs `requirements.txt` from `wheels/` when that directory
holds wheels, else from the package index.  Containers often cannot reach an
index, so fill `wheels/` on a host that can, for the image's Python and platform:

```sh
pip download -d wheels -r requirements.txt --only-binary=:all: \\
    --python-version 3.11 --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64
```

`rayfine init {name} --type http --wheels` does this from Rayfine's own wheel
cache (FastAPI, uvicorn and pydantic at the versions `requirements.txt` pins).
Anything else you add to `requirements.txt` needs its wheels in `wheels/` too.
"""

EPISODE_ENV = '''\
"""{name}: a Rayfine environment with a multi-turn episode.

The episode pattern:

* ``reset(seed)`` starts an episode and returns its first observation;
* ``step(action)`` plays one turn: ``{{"observation", "reward", "done", "info"}}``;
* ``score()`` sums the episode up (call it when ``done``, or to stop early).

The Actor holds one episode.  Each container has one Actor, so run one
environment per concurrent episode (``rf.aload_envs(image, n)``); with
sessions, each ``env.session()`` gets its own Actor, and this file stays
the same.  Everything here is the standard library, so it builds offline;
add packages to requirements.txt (and `rayfine wheels {name}`).

    rayfine dev {name}                                # edits are live, no rebuild
    rayfine call {name} reset --arg seed=3
    rayfine call {name} step --arg action=50
    rayfine call {name} score
"""

import os
import random
import re
from typing import Optional


class Actor:
    """One episode of "guess the number": the secret is between 1 and 100."""

    def __init__(self) -> None:
        # Settings come from environment variables: `--env MAX_TURNS=10`, env_vars={{...}}.
        self.max_turns = int(os.environ.get("MAX_TURNS", "7"))
        self.secret: Optional[int] = None
        self.turns = 0
        self.solved = False

    def reset(self, seed: int = 0) -> dict:
        """Start a new episode; the same seed gives the same secret."""
        self.secret = random.Random(seed).randint(1, 100)
        self.turns, self.solved = 0, False
        print(f"{name}: episode with seed {{seed}}", flush=True)  # `rayfine logs`, env.logs()
        return {{"observation": "Guess a number between 1 and 100.", "max_turns": self.max_turns}}

    def step(self, action: str) -> dict:
        """Play one guess (the model's reply, as text); a reply that is no number costs a turn."""
        if self.secret is None:
            raise RuntimeError("call reset() before step()")
        if self._done():
            raise RuntimeError("the episode is over: call score(), or reset() for another")
        self.turns += 1
        guess = _number(action)
        if guess is None:
            feedback = f"{{action!r}} is not a number."
        elif guess == self.secret:
            self.solved = True
            feedback = "Correct!"
        else:
            feedback = "Higher." if guess < self.secret else "Lower."
        done = self._done()
        return {{
            "observation": feedback,
            "reward": 1.0 if self.solved else 0.0,
            "done": done,
            "info": {{"turn": self.turns, "turns_left": self.max_turns - self.turns}},
        }}

    def score(self) -> dict:
        """1.0 for a first-turn solve, less for each extra turn, 0.0 if unsolved."""
        value = 1.0 - (self.turns - 1) / self.max_turns if self.solved else 0.0
        return {{"solved": self.solved, "turns": self.turns, "score": round(value, 4)}}

    def _done(self) -> bool:
        return self.solved or self.turns >= self.max_turns


def _number(text: str) -> Optional[int]:
    found = re.search(r"-?\\d+", str(text))
    return int(found.group()) if found else None
'''

EPISODE_README = """\
# {name}

A function-based Rayfine environment with a multi-turn episode:
`reset(seed)` -> first observation, `step(action)` -> observation, reward,
done, `score()` -> the episode's score.

```sh
rayfine dev {name}                        # runs this directory; saving env.py makes edits live
rayfine call {name} reset --arg seed=3    # from another shell
rayfine call {name} step --arg action=50
rayfine call {name} score
```

From Python (the image built once with `rayfine build {name} -t {tag}`):

```python
import rayfine_core as rf

with rf.load_env("{tag}", eager=True) as env:   # eager: a broken Actor fails here
    obs = env.reset(seed=3)
    low, high = 1, 100
    while True:
        guess = (low + high) // 2
        turn = env.step(action=str(guess))
        if turn["done"]:
            break
        low, high = (guess + 1, high) if turn["observation"] == "Higher." else (low, guess - 1)
    print(env.score())
```

## Files

- `env.py`: the environment (standard library only, so it builds offline).
- `requirements.txt` (add one when you need packages): installed before your
  code is copied, from `wheels/` when it holds wheels: `rayfine wheels {name}`
  downloads them on this host, so the build needs no package index.
"""

WHEELS_GITIGNORE = """\
# Wheels are downloaded, not committed: `rayfine wheels <env dir>` fills this directory.
*.whl
"""

FUNCTION_REQUIREMENTS = """\
# Packages env.py imports, one per line (pin them: name==version).
# `rayfine wheels <env dir>` downloads them and their dependencies into wheels/,
# and the build installs them from there, without a package index.
"""
