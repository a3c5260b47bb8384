"""
`oxian_tw._deadlines.Deadlines`: many deadlines on one timer of a
``Clock``, each kind a FIFO.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from oxian_tw._deadlines import Deadlines


class Owner:
    def __init__(self, log: list[tuple[Owner, str]], name: str = "") -> None:
        self.log = log
        self.name = name
        self.then: object = None

    def deadline_passed(self, kind: str) -> None:
        self.log.append((self, kind))
        if callable(self.then):
            self.then()

    def __repr__(self) -> str:
        return f"<Owner {self.name}>"


class DeadlinesTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.deadlines: Deadlines[str] = Deadlines(
            self.clock, {"short": 1.0, "long": 10.0}
        )
        self.passed: list[tuple[Owner, str]] = []

    def owner(self, name: str = "") -> Owner:
        return Owner(self.passed, name)

    def test_passes_at_its_time(self) -> None:
        owner = self.owner()
        self.deadlines.start(owner, "short")
        self.clock.advance(0.99)
        self.assertEqual(self.passed, [])
        self.clock.advance(0.01)
        self.assertEqual(self.passed, [(owner, "short")])
        self.assertFalse(self.deadlines.pending(owner, "short"))

    def test_one_timer_for_many(self) -> None:
        """A thousand owners of two kinds: one pending call on the clock."""
        owners = [self.owner() for _ in range(1000)]
        for n, owner in enumerate(owners):
            self.deadlines.start(owner, "long" if n % 2 else "short")
            self.clock.advance(0.001)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(10)
        self.assertEqual(len(self.passed), 1000)

    def test_order_within_a_kind(self) -> None:
        first, second = self.owner("1"), self.owner("2")
        self.deadlines.start(first, "short")
        self.clock.advance(0.5)
        self.deadlines.start(second, "short")
        self.clock.advance(0.5)
        self.assertEqual(self.passed, [(first, "short")])
        self.clock.advance(0.5)
        self.assertEqual(self.passed, [(first, "short"), (second, "short")])

    def test_restart_moves_it(self) -> None:
        """Progress (``restart``) sets the deadline from now again."""
        owner = self.owner()
        self.deadlines.start(owner, "short")
        self.clock.advance(0.9)
        self.deadlines.restart(owner, "short")
        self.clock.advance(0.9)
        self.assertEqual(self.passed, [])
        self.clock.advance(0.1)
        self.assertEqual(self.passed, [(owner, "short")])

    def test_cancel(self) -> None:
        owner = self.owner()
        self.deadlines.start(owner, "short")
        self.deadlines.cancel(owner, "short")
        self.deadlines.cancel(owner, "short")  # idempotent
        self.clock.advance(5)
        self.assertEqual(self.passed, [])
        self.assertEqual(len(self.deadlines), 0)

    def test_a_shorter_kind_after_a_longer_one(self) -> None:
        """A deadline earlier than the timer's moves the timer."""
        slow, quick = self.owner("slow"), self.owner("quick")
        self.deadlines.start(slow, "long")
        self.deadlines.start(quick, "short")
        self.clock.advance(1)
        self.assertEqual(self.passed, [(quick, "short")])
        self.clock.advance(9)
        self.assertEqual(self.passed, [(quick, "short"), (slow, "long")])

    def test_a_new_deadline_from_the_callback(self) -> None:
        """An owner may set its next deadline when one passes."""
        owner = self.owner()
        owner.then = lambda: self.deadlines.start(owner, "long")
        self.deadlines.start(owner, "short")
        self.clock.advance(1)
        self.assertTrue(self.deadlines.pending(owner, "long"))
        owner.then = None
        self.clock.advance(10)
        self.assertEqual(self.passed, [(owner, "short"), (owner, "long")])

    def test_oldest(self) -> None:
        """The owner whose deadline was set longest ago, across kinds."""
        self.assertIsNone(self.deadlines.oldest(["short", "long"]))
        a, b, c = self.owner("a"), self.owner("b"), self.owner("c")
        self.deadlines.start(a, "long")
        self.clock.advance(0.1)
        self.deadlines.start(b, "short")
        self.clock.advance(0.1)
        self.deadlines.start(c, "short")
        self.assertEqual(self.deadlines.oldest(["short", "long"]), (a, "long"))
        self.assertEqual(self.deadlines.oldest(["short"]), (b, "short"))
        self.deadlines.cancel(a, "long")
        self.assertEqual(self.deadlines.oldest(["short", "long"]), (b, "short"))

    def test_stop(self) -> None:
        self.deadlines.start(self.owner(), "short")
        self.deadlines.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(len(self.deadlines), 0)
