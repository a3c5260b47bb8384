"""
Tests that the public names are re-exported from ``oxian_tw``.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

import oxian_tw
from oxian_tw import _app, _errors, _producer, _results


class ExportTests(SynchronousTestCase):
    """``oxian_tw`` re-exports its public names."""

    def test_identity(self) -> None:
        """Each public name is the implementation's object."""
        self.assertIs(oxian_tw.OxianApp, _app.OxianApp)
        self.assertIs(oxian_tw.HttpError, _errors.HttpError)
        self.assertIs(oxian_tw.HubUnavailable, _errors.HubUnavailable)
        self.assertIs(oxian_tw.HubTimeout, _errors.HubTimeout)
        self.assertIs(oxian_tw.StreamClosed, _errors.StreamClosed)
        self.assertIs(oxian_tw.Response, _results.Response)
        self.assertIs(oxian_tw.Stream, _producer.Stream)

    def test_all(self) -> None:
        """``__all__`` lists exactly the public names."""
        self.assertEqual(
            set(oxian_tw.__all__),
            {
                "OxianApp",
                "HttpError",
                "HubUnavailable",
                "HubTimeout",
                "Response",
                "Stream",
                "StreamClosed",
                "__version__",
            },
        )
