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
- Dependencies: add a `requirements.txt` (installed with pip at build time, which
  needs a package index), or a `Dockerfile` starting with
  `ARG RAYFINE_BASE_IMAGE` / `FROM ${{RAYFINE_BASE_IMAGE}}` for full control.
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
