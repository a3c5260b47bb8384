"""
The assistant's model: what streams an answer, token by token.

By default a built-in, deterministic token generator (offline: the demo and
the tests need nothing else): `answer(prompt)` is the whole text it gives
for a prompt, `tokens(prompt, clock)` yields it a word at a time, one every
``$OXIAN_EXAMPLES_TOKEN_DELAY`` seconds (0.05).

With ``$OXIAN_EXAMPLES_MODEL_URL`` set (an OpenAI-compatible endpoint, e.g.
``https://api.openai.com/v1``; ``$OXIAN_EXAMPLES_MODEL`` names the model,
``$OXIAN_EXAMPLES_MODEL_KEY`` the key), the answer streams from it through
``httpx.AsyncClient``: asyncio, so run the app on the asyncio reactor
(``twistd -r asyncio oxian ...``, docs/asyncio.md).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from typing import Any

from twisted.internet.task import deferLater

#: Generations started in this process (the tests and the page read it).
STARTED = {"count": 0}

_WORDS = (
    "Streaming a model's answer through a run means the answer belongs to "
    "the conversation, not to the tab that asked: reload the page and it "
    "goes on where it was, open a second tab and both show it, press Stop "
    "and it stops everywhere. Each token is one event on the run's channel, "
    "kept until the run is forgotten, so a client that comes back with its "
    "Last-Event-ID misses nothing and sees nothing twice."
).split()


def answer(prompt: str) -> str:
    """The whole answer the built-in generator gives to ``prompt``."""
    return "".join(_pieces(prompt))


def _pieces(prompt: str) -> list[str]:
    echo = " ".join(prompt.split()[:12]) or "nothing"
    head = f'You asked: "{echo}". '.split()
    return [word + " " for word in head + list(_WORDS)]


def delay() -> float:
    """Seconds between two tokens of the built-in generator."""
    return float(os.environ.get("OXIAN_EXAMPLES_TOKEN_DELAY", "0.05"))


async def builtin(prompt: str, clock: Any) -> AsyncIterator[str]:
    """`answer(prompt)`, a word at a time."""
    pause = delay()
    for piece in _pieces(prompt):
        await deferLater(clock, pause, lambda: None)
        yield piece


async def remote(prompt: str, url: str) -> AsyncIterator[str]:
    """The answer of an OpenAI-compatible endpoint, as it streams."""
    import httpx

    headers = {}
    key = os.environ.get("OXIAN_EXAMPLES_MODEL_KEY")
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request = {
        "model": os.environ.get("OXIAN_EXAMPLES_MODEL", "gpt-4o-mini"),
        "stream": True,
        "messages": [{"role": "user", "content": prompt}],
    }
    async with httpx.AsyncClient(timeout=60) as client:
        async with client.stream(
            "POST", url.rstrip("/") + "/chat/completions", json=request, headers=headers
        ) as response:
            response.raise_for_status()
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                delta = json.loads(line[6:])["choices"][0].get("delta", {})
                if delta.get("content"):
                    yield delta["content"]


def tokens(prompt: str, clock: Any) -> AsyncIterator[str]:
    """The answer to ``prompt`` from the model the environment names."""
    STARTED["count"] += 1
    url = os.environ.get("OXIAN_EXAMPLES_MODEL_URL")
    return remote(prompt, url) if url else builtin(prompt, clock)
