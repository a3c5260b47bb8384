"""
``twistd -r asyncio`` and ``twistd -r uvloop`` serve the app, and an
``async def`` handler awaiting asyncio works on both (SPEC §14); the
``uvloop`` reactor plugin is found.
"""

from __future__ import annotations

import json

from twisted.application.reactors import getReactorTypes
from twisted.trial.unittest import SynchronousTestCase

from .helpers import TwistdProcess, make_tree, skip_unless

ROUTES = {
    "index.py": """
        import asyncio

        async def nothing():
            return None

        async def GET(data, ctx):
            # An asyncio task and a Deferred of the app's clock, for no time.
            await asyncio.get_running_loop().create_task(nothing())
            await ctx.sleep(0)
            return {"loop": type(asyncio.get_running_loop()).__module__}
    """,
}


class ReactorTests(SynchronousTestCase):
    def test_uvloop_plugin(self) -> None:
        names = {reactor.shortName for reactor in getReactorTypes()}
        self.assertIn("uvloop", names)

    def serve(self, reactor: str) -> dict[str, str]:
        root = make_tree(self.mktemp(), ROUTES)
        server = TwistdProcess("--routes", root, reactor=reactor)
        self.addCleanup(server.stop)
        status, _, body = server.request("GET", "/")
        self.assertEqual(status, 200, body)
        answer: dict[str, str] = json.loads(body)
        return answer

    def test_asyncio(self) -> None:
        self.assertEqual(self.serve("asyncio")["loop"], "asyncio.unix_events")

    def test_uvloop(self) -> None:
        try:
            import uvloop  # noqa: F401
        except ImportError:
            skip_unless(False, "uvloop is not installed (pip install uvloop)")
        self.assertEqual(self.serve("uvloop")["loop"], "uvloop")
