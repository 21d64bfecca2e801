"""A small WebShop-style environment served as an existing FastAPI app.

An episode gives the agent a shopping goal ("a red cotton t-shirt under
$20"); the agent searches a seeded catalogue, adds items to its cart and
checks out; the reward is how well the purchase matches the goal. Episodes
are kept server-side by id, so state lives across calls.

Routes (all POST, JSON bodies): /reset, /search, /add_to_cart, /checkout,
plus GET /health.
"""

from __future__ import annotations

import random
import threading
import uuid
from typing import Dict, List

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

COLORS = ["red", "blue", "green", "black", "white"]
MATERIALS = ["cotton", "wool", "linen", "polyester"]
KINDS = ["t-shirt", "sweater", "scarf", "jacket"]

app = FastAPI(title="webshop", version="1.0")
_lock = threading.Lock()
_episodes: Dict[str, Episode] = {}


class Product(BaseModel):
    sku: str
    title: str
    color: str
    material: str
    kind: str
    price: float


class Goal(BaseModel):
    color: str
    material: str
    kind: str
    max_price: float
    text: str


class Episode(BaseModel):
    id: str
    goal: Goal
    catalogue: List[Product]
    cart: List[str] = Field(default_factory=list)
    done: bool = False


class ResetRequest(BaseModel):
    seed: int = 0
    catalogue_size: int = Field(40, ge=5, le=500)


class SearchRequest(BaseModel):
    episode_id: str
    query: str
    limit: int = Field(5, ge=1, le=50)


class CartRequest(BaseModel):
    episode_id: str
    sku: str


class EpisodeRef(BaseModel):
    episode_id: str


@app.get("/health")
def health() -> dict:
    return {"status": "ok", "episodes": len(_episodes)}


@app.post("/reset")
def reset(request: ResetRequest) -> dict:
    """Start an episode: returns its id and the goal to satisfy."""
    rng = random.Random(request.seed)
    catalogue = [_product(rng, i) for i in range(request.catalogue_size)]
    target = rng.choice(catalogue)
    budget = round(target.price * 1.1, 2)
    goal = Goal(
        color=target.color,
        material=target.material,
        kind=target.kind,
        max_price=budget,
        text=f"buy a {target.color} {target.material} {target.kind} under ${budget}",
    )
    episode = Episode(id=uuid.uuid4().hex[:12], goal=goal, catalogue=catalogue)
    with _lock:
        _episodes[episode.id] = episode
    return {"episode_id": episode.id, "goal": goal.text}


@app.post("/search")
def search(request: SearchRequest) -> dict:
    """Products whose title shares the most words with the query."""
    episode = _episode(request.episode_id)
    words = set(request.query.lower().split())
    ranked = sorted(
        episode.catalogue, key=lambda p: (-len(words & set(p.title.lower().split())), p.price)
    )
    return {"results": [p.model_dump() for p in ranked[: request.limit]]}


@app.post("/add_to_cart")
def add_to_cart(request: CartRequest) -> dict:
    episode = _episode(request.episode_id)
    if not any(p.sku == request.sku for p in episode.catalogue):
        raise HTTPException(404, f"no product {request.sku!r} in this episode")
    episode.cart.append(request.sku)
    return {"cart": episode.cart}


@app.post("/checkout")
def checkout(request: EpisodeRef) -> dict:
    """End the episode; reward 1.0 for an item matching every goal attribute within budget."""
    episode = _episode(request.episode_id)
    if not episode.cart:
        raise HTTPException(400, "the cart is empty")
    bought = [p for p in episode.catalogue if p.sku in episode.cart]
    reward = max(_score(p, episode.goal) for p in bought)
    episode.done = True
    return {"reward": reward, "bought": [p.sku for p in bought]}


def _episode(episode_id: str) -> Episode:
    episode = _episodes.get(episode_id)
    if episode is None:
        raise HTTPException(404, f"unknown episode {episode_id!r}; call /reset first")
    if episode.done:
        raise HTTPException(409, "episode finished; call /reset for a new one")
    return episode


def _product(rng: random.Random, i: int) -> Product:
    color, material, kind = rng.choice(COLORS), rng.choice(MATERIALS), rng.choice(KINDS)
    price = round(rng.uniform(8, 80), 2)
    return Product(
        sku=f"SKU{i:04d}",
        title=f"{color} {material} {kind}",
        color=color,
        material=material,
        kind=kind,
        price=price,
    )


def _score(product: Product, goal: Goal) -> float:
    matches = [
        product.color == goal.color,
        product.material == goal.material,
        product.kind == goal.kind,
    ]
    score = sum(matches) / len(matches)
    return round(score if product.price <= goal.max_price else score * 0.5, 3)
