"""
Tests for settings given as a mapping (``OxianApp(config=...)``).
"""

from __future__ import annotations

import attrs
from twisted.trial.unittest import SynchronousTestCase

from oxian_tw._config import ConfigError, settings_from


class SettingsTests(SynchronousTestCase):
    """Config keys."""

    def test_dashes_or_underscores(self) -> None:
        """``body-limit`` and ``body_limit`` are the same key."""
        self.assertEqual(settings_from({"body-limit": 5}).body_limit, 5)
        self.assertEqual(settings_from({"body_limit": 6}).body_limit, 6)

    def test_unknown_key(self) -> None:
        """An unknown key is an error naming it."""
        error = self.assertRaises(ConfigError, settings_from, {"bodylimit": 1})
        self.assertIn("bodylimit", str(error))

    def test_bad_value(self) -> None:
        """A bad value is an error naming the option."""
        for config in (
            {"body-limit": -1},
            {"debug": "yes"},
            {"listen": []},
            {"base-path": "x"},
        ):
            with self.subTest(config=config):
                error = self.assertRaises(ConfigError, settings_from, config)
                self.assertIn(next(iter(config)).replace("_", "-"), str(error))

    def test_listen_string_or_list(self) -> None:
        """``listen`` takes one description or several."""
        self.assertEqual(settings_from({"listen": "tcp:1"}).listen, ("tcp:1",))
        self.assertEqual(
            settings_from({"listen": ["tcp:1", "tcp:2"]}).listen, ("tcp:1", "tcp:2")
        )


class DefaultsWrittenOnceTests(SynchronousTestCase):
    """Every option's default is `Settings`'s: one place (issue 18)."""

    def test_option_defaults_are_the_settings(self) -> None:
        from oxian_tw._config import OPTIONS, Settings

        settings = Settings()
        self.assertEqual(
            {o.attribute for o in OPTIONS}, set(attrs.fields_dict(Settings))
        )
        for option in OPTIONS:
            if option.name == "listen":
                self.assertIsNone(option.default)
                continue
            self.assertEqual(option.default, getattr(settings, option.attribute))

    def test_hub_defaults(self) -> None:
        from twisted.internet.task import Clock

        from oxian_tw._config import Settings
        from oxian_tw.hub import MemoryHub

        clock = Clock()
        hub = MemoryHub(lambda: clock)
        settings = Settings()
        self.assertEqual(
            (
                hub._backend._history,
                hub._backend._history_bytes,
                hub._backend._history_age,
            ),
            (
                settings.hub_history,
                settings.hub_history_bytes,
                settings.hub_history_age,
            ),
        )
