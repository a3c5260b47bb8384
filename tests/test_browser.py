"""
The demo page in a real browser: ``twistd -n oxian --routes
examples/routes`` on an ephemeral port, driven with Playwright in Debian's
headless Chromium. Skips (or, under ``.ci/run``, fails) without them.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from .helpers import (
    TwistdProcess,
    assert_clean_exit,
    chromium_and_playwright,
    launch_chromium,
    tls_listener,
)

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "examples")
TIMEOUT_MS = 20_000


class BrowserTestCase(SynchronousTestCase):
    """Debian's headless Chromium against a real ``twistd -n oxian`` of the examples."""

    def setUp(self) -> None:
        self.chromium, self.sync_playwright = chromium_and_playwright()
        work = os.path.abspath(self.mktemp())
        os.makedirs(work)
        self.server = TwistdProcess(
            "--routes",
            os.path.join(EXAMPLES, "routes"),
            env={
                "OXIAN_EXAMPLES_DB": os.path.join(work, "examples.sqlite3"),
                **self.environment(work),
            },
            **self.listener(work),
        )
        self.addCleanup(assert_clean_exit, self, self.server)

    def listener(self, work: str) -> dict[str, str]:
        """``TwistdProcess`` keywords for the listener (default: plain TCP)."""
        return {}

    def environment(self, work: str) -> dict[str, str]:
        """More environment for the server."""
        return {}

    def launch(self, playwright: Any) -> Any:
        return launch_chromium(playwright, self.chromium)

    @contextlib.contextmanager
    def page(self, path: str) -> Iterator[Any]:
        """A page of a fresh headless Chromium at ``path`` of the server."""
        with self.sync_playwright() as playwright:
            browser = self.launch(playwright)
            try:
                page = browser.new_page()
                page.set_default_timeout(TIMEOUT_MS)
                page.goto(f"http://127.0.0.1:{self.server.port}{path}")
                yield page
            finally:
                browser.close()


class DemoPageTests(BrowserTestCase):
    def test_chat_between_tabs_metrics_and_ticker(self) -> None:
        """
        Two tabs of one browser: a chat message sent from one arrives in the
        other; the dashboard shows at least three updates; the ticker shows
        prices for the chosen symbol.
        """
        url = f"http://127.0.0.1:{self.server.port}/"
        with self.sync_playwright() as playwright:
            browser = self.launch(playwright)
            try:
                # Narrow enough that a layout overlap would block the clicks.
                context = browser.new_context(viewport={"width": 1024, "height": 700})
                sender, receiver = context.new_page(), context.new_page()
                for page in (sender, receiver):
                    page.set_default_timeout(TIMEOUT_MS)
                    page.goto(url)
                    page.wait_for_function(
                        "document.getElementById('chat-state').textContent === 'live'"
                    )

                sender.fill("input[name=username]", "alice")
                sender.fill("input[name=message]", "hello from the first tab")
                sender.click("#chat-form button")
                receiver.locator(
                    "#messages li.chat-message",
                    has_text="alice: hello from the first tab",
                ).wait_for()
                # The sender's own stream carries it too, and the form was reset.
                sender.locator("#messages li.chat-message").first.wait_for()
                self.assertEqual(sender.input_value("input[name=message]"), "")

                receiver.wait_for_function(
                    "Number(document.getElementById('metrics-count').textContent) >= 3"
                )
                streams = int(receiver.text_content("#streams") or "0")
                self.assertGreaterEqual(streams, 4)  # two chats, two dashboards
                self.assertTrue(
                    (receiver.text_content("#memory") or "").endswith("MiB")
                )

                sender.select_option("#symbol", "MSFT")
                sender.wait_for_function(
                    "document.getElementById('price').textContent.startsWith('MSFT ')"
                )
            finally:
                browser.close()

    def test_history_presence_and_charts(self) -> None:
        """
        A message posted before the page loaded is shown on load (history);
        the chat lists who is in the room and follows joins and leaves; the
        dashboard and ticker charts open already drawn from history.
        """
        status, _, _ = self.server.request(
            "POST",
            "/rooms/general/send",
            body=b'{"username": "early", "message": "posted before you came"}',
            headers={"Content-Type": "application/json"},
        )
        self.assertEqual(status, 200)
        url = f"http://127.0.0.1:{self.server.port}/"

        def drawn(chart: str, at_least: int) -> str:
            """JavaScript: the chart's line has ``at_least`` points."""
            return (
                f"(document.querySelector('#{chart} polyline').getAttribute('points')"
                f" || '').split(' ').filter(Boolean).length >= {at_least}"
            )

        with self.sync_playwright() as playwright:
            browser = self.launch(playwright)
            try:
                first = browser.new_context().new_page()
                first.set_default_timeout(TIMEOUT_MS)
                first.goto(url)
                first.locator(
                    "#messages li.chat-message",
                    has_text="early: posted before you came",
                ).wait_for()
                me = first.input_value("input[name=username]")
                first.locator("#people li", has_text=me).wait_for()

                # Another visitor (its own storage, its own name) joins.
                second = browser.new_context().new_page()
                second.set_default_timeout(TIMEOUT_MS)
                second.goto(url)
                second.locator("#people li", has_text=me).wait_for()
                other = second.input_value("input[name=username]")
                self.assertNotEqual(other, me)
                first.locator("#people li", has_text=other).wait_for()
                self.assertEqual(first.locator("#people li").count(), 2)
                second.context.close()
                first.locator("#people li", has_text=other).wait_for(state="detached")

                # Charts: filled live, and from history for a later visitor.
                first.wait_for_function(drawn("memory-chart", 5))
                first.select_option("#symbol", "MSFT")
                first.wait_for_function(drawn("price-chart", 1))
                late = browser.new_context().new_page()
                late.goto(url)
                # Live alone would take 5 s for 5 points: these come from history.
                late.wait_for_function(drawn("memory-chart", 5), timeout=900)
                late.select_option("#symbol", "MSFT")
                late.wait_for_function(drawn("price-chart", 3), timeout=900)
            finally:
                browser.close()


class AssistantTests(BrowserTestCase):
    """The assistant's answer is a run: it survives a reload, shows in a
    second tab, and its Stop button stops it in both."""

    def environment(self, work: str) -> dict[str, str]:
        # Slow enough to reload and stop mid-answer.
        return {"OXIAN_EXAMPLES_TOKEN_DELAY": "0.15"}

    def started(self) -> int:
        """Generations the server started (asked outside the browser)."""
        import json
        import urllib.request

        url = f"http://127.0.0.1:{self.server.port}/assistant/stats"
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(json.load(response)["started"])

    def test_reload_second_tab_stop(self) -> None:
        url = f"http://127.0.0.1:{self.server.port}/"
        words = "document.getElementById('answer').textContent.split(' ').length"
        with self.sync_playwright() as playwright:
            browser = self.launch(playwright)
            try:
                context = browser.new_context(viewport={"width": 1024, "height": 800})
                first = context.new_page()
                first.set_default_timeout(TIMEOUT_MS)
                first.goto(url)
                first.fill("input[name=prompt]", "what is a run?")
                first.click("#assistant-form button")
                first.wait_for_function(f"{words} > 6")
                # Reload mid-answer: the same answer goes on (from its start).
                first.reload()
                first.wait_for_function(
                    "document.getElementById('answer').textContent"
                    ".startsWith('You asked: \"what is a run?\"')"
                )
                before = first.evaluate(words)
                first.wait_for_function(f"{words} > {before + 2}")
                self.assertEqual(first.text_content("#assistant-state"), "streaming")
                # A second tab shows it streaming too. (Its own context, with
                # the first one's localStorage: one context's tabs share six
                # HTTP/1.1 connections, which the two pages' streams fill.)
                other = browser.new_context(
                    viewport={"width": 1024, "height": 800},
                    storage_state=context.storage_state(),
                )
                second = other.new_page()
                second.set_default_timeout(TIMEOUT_MS)
                second.goto(url)
                second.wait_for_function(f"{words} > 6")
                self.assertEqual(self.started(), 1)
                # Stop: both tabs say stopped, and nothing more arrives.
                second.click("#assistant-stop")
                for page in (first, second):
                    page.wait_for_function(
                        "document.getElementById('assistant-state').textContent"
                        " === 'stopped'"
                    )
                final = first.text_content("#answer")
                first.wait_for_timeout(600)
                self.assertEqual(first.text_content("#answer"), final)
                self.assertEqual(self.started(), 1)
            finally:
                browser.close()

    def test_finished_eventsource_runs_nothing_again(self) -> None:
        """
        A plain EventSource on a finished run: the answer once (snapshot),
        ``end``, then its reconnect gets 204 and it stays closed: the
        generator never starts again.
        """
        with self.page("/") as page:
            turn = page.evaluate(
                """fetch('/assistant/ask', {method: 'POST',
                    headers: {'Content-Type': 'application/json'},
                    body: JSON.stringify({prompt: 'short'})})
                  .then((r) => r.json()).then((j) => j.turn)"""
            )
            page.wait_for_function(
                f"""fetch('/assistant/turns/{turn}/events')
                  .then((r) => r.text()).then((t) => t.includes('event: end'))""",
                polling=500,
            )
            seen = page.evaluate(
                f"""new Promise((resolve) => {{
                  const events = [];
                  const source = new EventSource('/assistant/turns/{turn}/events');
                  source.addEventListener('snapshot', () => events.push('snapshot'));
                  source.addEventListener('end', () => events.push('end'));
                  source.onerror = () => {{
                    if (source.readyState === EventSource.CLOSED) resolve(events);
                  }};
                }})"""
            )
            self.assertEqual(seen, ["snapshot", "end"])
            page.wait_for_timeout(1000)
            self.assertEqual(self.started(), 1)


class StreamTokenTests(BrowserTestCase):
    """The seed's protected stream from a browser, with a stream token."""

    def environment(self, work: str) -> dict[str, str]:
        # Tokens that expire every 2 s: renewal shows within the test.
        return {"OXIAN_EXAMPLES_STREAM_TOKEN_TTL": "2"}

    def test_protected_stream_with_renewed_tokens(self) -> None:
        """
        The page fetches a stream token, the client sends it as ?token=;
        at each expiry the server says ``expired``, the client fetches a
        fresh token and reconnects: notifications keep coming.
        """
        with self.page("/") as page:
            page.click("#protected-open")
            page.wait_for_function(
                "document.getElementById('protected-welcome').textContent"
                ".startsWith('Welcome Demo User')"
            )
            page.wait_for_function(
                "Number(document.getElementById('protected-tokens').textContent) >= 3",
                timeout=30_000,
            )
            before = int(page.text_content("#protected-count") or "0")
            count = "Number(document.getElementById('protected-count').textContent)"
            page.wait_for_function(f"{count} > {before}")
        log = self.server.output()
        self.assertIn("/protected/stream?interval=1&token=REDACTED", log)
        self.assertNotIn("token=eyJ", log)


class PrivateRoomPageTests(BrowserTestCase):
    """The demo page's chat in its private room, reached with a token."""

    def test_private_room(self) -> None:
        with self.page("/") as page:
            page.wait_for_function(
                "document.getElementById('chat-state').textContent === 'live'"
            )
            page.select_option("#room", "private-team")
            page.wait_for_function(
                "document.getElementById('chat-state').textContent === 'live'"
            )
            page.locator("#people li", has_text="Demo User").wait_for()
            page.fill("input[name=username]", "mallory")
            page.fill("input[name=message]", "for members only")
            page.click("#chat-form button")
            # Sent with the room's token: named by it, not by the form.
            page.locator(
                "#messages li.chat-message", has_text="Demo User: for members only"
            ).wait_for()
        status, _, body = self.server.request("GET", "/rooms/private-team/events")
        self.assertEqual(status, 403)
        self.assertNotIn(b"for members only", body)


class FetchTransportTests(BrowserTestCase):
    """``oxian-sse.js`` with ``transport: "fetch"``: headers, Last-Event-ID, 204."""

    def environment(self, work: str) -> dict[str, str]:
        return {"OXIAN_EXAMPLES_TOKEN_DELAY": "0.01"}

    def test_header_and_resume(self) -> None:
        with self.page("/") as page:
            # A header EventSource cannot send: the seed's protected stream.
            seen = page.evaluate(
                """import('/oxian-sse.js').then(({SSEClient}) =>
                new Promise((resolve) => {
                  const seen = [];
                  const client = new SSEClient('/protected/stream?interval=0.2', {
                    transport: 'fetch', headers: {Authorization: 'Bearer demo-token'},
                  });
                  client.on('authenticated', (m) => seen.push(m.message));
                  client.on('notification', () => {
                    seen.push('notification');
                    if (seen.length >= 3) { client.close(); resolve(seen); }
                  });
                  client.connect();
                }))"""
            )
            self.assertEqual(
                seen, ["Welcome Demo User", "notification", "notification"]
            )
            # A finished run: its events, end, then the reconnect (with
            # Last-Event-ID, after a backoff) gets 204 and the client stops.
            outcome = page.evaluate(
                """(async () => {
                  const {SSEClient} = await import('/oxian-sse.js');
                  const asked = await fetch('/assistant/ask', {method: 'POST',
                    headers: {'Content-Type': 'application/json'},
                    body: JSON.stringify({prompt: 'fetch me'})});
                  const {turn} = await asked.json();
                  return await new Promise((resolve) => {
                    const events = [];
                    const client = new SSEClient(`/assistant/turns/${turn}/events`, {
                      transport: 'fetch', initialDelay: 200,
                    });
                    client.on('message', () => events.push('token'));
                    client.on('end', (d) => events.push(`end:${d.status}`));
                    client.on('state', (state) => {
                      const last = client.lastEventId;
                      if (state === 'closed') resolve({events, last});
                    });
                    client.connect();
                  });
                })()"""
            )
            events = outcome["events"]
            self.assertEqual(events[-1], "end:done")
            self.assertGreater(events.count("token"), 10)
            self.assertEqual(events.count("end:done"), 1)
            self.assertTrue(outcome["last"])


class ClientScriptTests(BrowserTestCase):
    """oxian-sse.js in the browser: JSON data, reset as a callback, backoff."""

    def test_client(self) -> None:
        with self.page("/") as page:
            result = page.evaluate(
                """async () => {
                  const { SSEClient } = await import("/oxian-sse.js");
                  const got = { states: [], counts: [], resets: [] };
                  // An id the hub cannot know: one reset, as a callback.
                  const room = new SSEClient("/rooms/js/events", {
                    lastEventId: "0-0-0",
                    onReset: (info) => got.resets.push(info),
                  });
                  await new Promise((done) => {
                    room.on("reset", () => done());
                    room.connect();
                  });
                  room.close();
                  // JSON data, and the state as it goes.
                  const events = new SSEClient("/events");
                  events.on("state", (s) => got.states.push(s));
                  await new Promise((done) => {
                    events.on("counter", (data) => {
                      got.counts.push(data.count);
                      if (got.counts.length === 2) done();
                    });
                    events.connect();
                  });
                  events.close();
                  // A stream the server refuses: the client retries.
                  const refused = new SSEClient(
                    "/no-such-stream", { initialDelay: 50 });
                  const retried = new Promise((done) => {
                    let errors = 0;
                    refused.on("error", () => { if (++errors === 2) done(); });
                  });
                  refused.connect();
                  await retried;
                  got.refusedState = refused.state;
                  refused.close();
                  got.closedState = refused.state;
                  return got;
                }"""
            )
        self.assertEqual(
            result["resets"], [{"channel": "room:js", "last_event_id": "0-0-0"}]
        )
        self.assertEqual(result["counts"], [1, 2])
        self.assertEqual(result["states"][:2], ["connecting", "open"])
        self.assertEqual(result["states"][-1], "closed")
        self.assertEqual(result["refusedState"], "reconnecting")
        self.assertEqual(result["closedState"], "closed")


class ReactHookTests(BrowserTestCase):
    """The seed's React hook on oxian-sse.js, with the React UMD build the
    example ships (nothing installed but Python)."""

    def test_live_counter(self) -> None:
        with self.page("/react") as page:
            page.wait_for_function(
                "document.getElementById('state')?.textContent === 'live'"
            )
            page.wait_for_function(
                "Number(document.getElementById('count')?.textContent) >= 2"
            )


class DemoPageOverH2Tests(BrowserTestCase):
    """
    The demo page over HTTP/2 (TLS, ALPN): twelve more SSE streams than
    HTTP/1.1's six connections per host allow, all on one connection, and
    the chat's POST still gets through.
    """

    STREAMS = 12

    def listener(self, work: str) -> dict[str, str]:
        return tls_listener(os.path.join(work, "tls"))

    def test_twelve_streams_and_the_chat_on_one_connection(self) -> None:
        """
        The page is served over h2; twelve extra room streams open and stay
        open beside the page's own; a message sent from the form reaches
        every one of them.
        """
        url = f"https://127.0.0.1:{self.server.port}/"
        with self.sync_playwright() as playwright:
            browser = launch_chromium(
                playwright, self.chromium, "--ignore-certificate-errors"
            )
            try:
                context = browser.new_context(
                    ignore_https_errors=True,
                    viewport={"width": 1024, "height": 700},
                )
                page = context.new_page()
                page.set_default_timeout(TIMEOUT_MS)
                page.goto(url)
                self.assertEqual(
                    page.evaluate(
                        "performance.getEntriesByType('navigation')[0].nextHopProtocol"
                    ),
                    "h2",
                )
                page.wait_for_function(
                    "document.getElementById('chat-state').textContent === 'live'"
                )
                page.evaluate(
                    """(count) => {
                        window.extra = [];
                        for (let i = 0; i < count; i++) {
                            const source = new EventSource("/rooms/general/events");
                            const entry = {source, open: false, texts: []};
                            source.onopen = () => { entry.open = true; };
                            source.addEventListener("message", (event) => {
                                entry.texts.push(event.data);
                            });
                            window.extra.push(entry);
                        }
                    }""",
                    self.STREAMS,
                )
                page.wait_for_function("window.extra.every((entry) => entry.open)")
                page.fill("input[name=username]", "alice")
                page.fill("input[name=message]", "over one connection")
                page.click("#chat-form button")
                page.locator(
                    "#messages li.chat-message",
                    has_text="alice: over one connection",
                ).wait_for()
                page.wait_for_function(
                    """window.extra.every((entry) => entry.texts.some(
                        (text) => text.includes("over one connection")))"""
                )
                open_now = page.evaluate(
                    "window.extra.filter((e) => e.source.readyState === 1).length"
                )
                self.assertEqual(open_now, self.STREAMS)
            finally:
                browser.close()
