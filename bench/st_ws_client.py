"""A client that speaks the annotation app's own websocket protocol, as the browser does.

Streamlit's page talks to the server over one websocket, ``ws://host:port/_stcore/stream``, with the
subprotocol list ``["streamlit", <XSRF token>]`` (the token is the ``_streamlit_xsrf`` cookie the
server sets on ``GET /_stcore/health``). The browser sends ``BackMsg`` protobufs (``rerun_script``
with a ``ClientState``: query string, page hash, fragment id, widget states) and receives
``ForwardMsg`` protobufs: deltas (the page's elements, each with the fragment it belongs to) and, at
the end of every run, ``script_finished``.

The rating screen is one custom component (``annotation_ui/components/rating_screen``): its element
id ends in ``-rating_screen``, its ``json`` is what the screen draws (``key``, ``src``, ``progress``,
``message``, ...), and the page answers it with a trigger widget ``<prefix>_<element id>__events``
whose value is ``[{"event": name, "value": {...}}]``, sent as a rerun of the screen's fragment.

Used by ``bench/annotation_e2e.py`` and ``tests/test_app_replicas_ws.py``.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import websockets
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.WidgetStates_pb2 import WidgetState

XSRF_COOKIE = "_streamlit_xsrf"
SCREEN_SUFFIX = "-rating_screen"  # the element id of the rating screen component ends so
TRIGGER_PREFIX = "$$STREAMLIT_INTERNAL_KEY"  # streamlit.runtime.state.session_state.STREAMLIT_INTERNAL_KEY_PREFIX
RUN_DONE = (ForwardMsg.FINISHED_SUCCESSFULLY, ForwardMsg.FINISHED_FRAGMENT_RUN_SUCCESSFULLY)


class AppError(RuntimeError):
    """The app answered in a way a browser would show as broken (an exception, a compile error)."""


@dataclass
class Screen:
    """The rating screen as the last run drew it."""

    element_id: str
    fragment_id: str
    data: dict[str, Any]

    @property
    def key(self) -> str:
        return str(self.data.get("key", ""))

    @property
    def item_id(self) -> int | None:
        """The item in the screen key ``a<assignment>-i<item>`` (None for a key without one)."""
        tail = self.key.rsplit("-i", 1)
        return int(tail[1]) if len(tail) == 2 and tail[1].isdigit() else None


@dataclass
class Button:
    """A button the last run drew (``st.button``): clicking it is a trigger widget."""

    element_id: str
    fragment_id: str
    label: str


@dataclass
class Run:
    """What one script run sent: the rating screen (if drawn), the buttons and texts on the page."""

    screen: Screen | None = None
    buttons: list[Button] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    messages: int = 0
    bytes: int = 0
    seconds: float = 0.0  # from sending the request to script_finished


def _element_text(element: Any) -> str | None:
    kind = element.WhichOneof("type")
    if kind == "markdown":
        return str(element.markdown.body)
    if kind == "alert":
        return str(element.alert.body)
    if kind in ("button", "form_submit_button"):
        return f"[{getattr(element, kind).label}]"
    if kind == "text_input":
        return f"[{element.text_input.label}: ...]"
    if kind == "exception":
        return f"exception: {element.exception.message}"
    return None


class AppSession:
    """One browser tab's session with one app server (a replica): a websocket and a keep-alive HTTP
    connection for the stimuli. Not safe for concurrent use: one request at a time, as a rater acts."""

    def __init__(self, host: str, port: int, timeout: float = 120.0) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self.page_hash = ""
        self.query_string = ""
        self.session_id = ""
        self.opened_ms = 0.0  # the first run's time, set by whoever opened the page
        self._ws: Any = None
        self._http: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self.cookies: dict[str, str] = {}  # what the server (or a proxy in front) set, sent back as a browser does

    # ------------------------------------------------------------------ connection

    async def open(self, query_string: str = "") -> Run:
        """Load the page as a browser does: the health check (which sets the XSRF cookie), the
        websocket, then the first run with the address's query string."""
        status, _, _ = await self._get("/_stcore/health")
        if status != 200:
            raise AppError(f"{self.host}:{self.port}/_stcore/health answered {status}")
        xsrf = self.cookies.get(XSRF_COOKIE, "")
        protocols = ["streamlit", xsrf] if xsrf else ["streamlit"]
        extra = {"Cookie": self._cookie_header()} if self.cookies else {}
        self._ws = await websockets.connect(
            f"ws://{self.host}:{self.port}/_stcore/stream",
            subprotocols=protocols,  # type: ignore[arg-type]  # Subprotocol is a NewType of str
            additional_headers=extra,
            max_size=None,
            open_timeout=self.timeout,
        )
        self.query_string = query_string
        message = BackMsg()
        message.rerun_script.query_string = query_string
        message.rerun_script.page_script_hash = ""  # the server picks the default page
        return await self._request(message)

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
            self._ws = None
        if self._http is not None:
            self._http[1].close()
            self._http = None

    # ------------------------------------------------------------------ actions

    async def send_event(self, screen: Screen, name: str, values: dict[str, Any]) -> Run:
        """Send the screen's event ``name`` (a click or key on the page) and wait for the run it starts."""
        payload = [{"event": name, "value": {"key": screen.key, **values}}]
        message = BackMsg()
        state = message.rerun_script
        state.query_string = self.query_string
        state.page_script_hash = self.page_hash
        state.fragment_id = screen.fragment_id  # only the screen's fragment runs again, as in the browser
        state.widget_states.widgets.append(
            WidgetState(id=f"{TRIGGER_PREFIX}_{screen.element_id}__events", json_trigger_value=json.dumps(payload))
        )
        return await self._request(message)

    async def click(self, button: Button) -> Run:
        """Click an ``st.button`` (a trigger widget: true for the run it starts)."""
        message = BackMsg()
        state = message.rerun_script
        state.query_string = self.query_string
        state.page_script_hash = self.page_hash
        state.fragment_id = button.fragment_id
        state.widget_states.widgets.append(WidgetState(id=button.element_id, trigger_value=True))
        return await self._request(message)

    async def fetch(self, path: str) -> bytes:
        """GET ``path`` from this server over one kept-alive connection, as the page loads a stimulus."""
        status, _, body = await self._get(path)
        if status != 200:
            raise AppError(f"GET {path} answered {status}")
        return body

    # ------------------------------------------------------------------ protocol

    async def _request(self, message: BackMsg) -> Run:
        started = time.perf_counter()
        await self._ws.send(message.SerializeToString())
        run = await asyncio.wait_for(self._until_finished(), self.timeout)
        run.seconds = time.perf_counter() - started
        return run

    async def _until_finished(self) -> Run:
        run = Run()
        while True:
            raw = await self._ws.recv()
            run.messages += 1
            run.bytes += len(raw)
            msg = ForwardMsg()
            msg.ParseFromString(raw)
            kind = msg.WhichOneof("type")
            if kind == "delta":
                self._take_delta(msg, run)
            elif kind == "new_session":
                self.session_id = msg.new_session.initialize.session_id or self.session_id
                self.page_hash = msg.new_session.page_script_hash or self.page_hash
            elif kind == "navigation":
                self.page_hash = msg.navigation.page_script_hash or self.page_hash
            elif kind == "page_info_changed":
                self.query_string = msg.page_info_changed.query_string
            elif kind == "ref_hash":
                # Only sent for messages the client says it has cached; this client reports none.
                raise AppError(f"the server sent a cached-message reference ({msg.ref_hash})")
            elif kind == "script_finished":
                status = msg.script_finished
                if status == ForwardMsg.FINISHED_WITH_COMPILE_ERROR:
                    raise AppError("the page failed to compile")
                if status in RUN_DONE:
                    return run
                # FINISHED_EARLY_FOR_RERUN: the page asked for another run (st.rerun); wait for that one.
                run = Run(messages=run.messages, bytes=run.bytes)

    def _take_delta(self, msg: ForwardMsg, run: Run) -> None:
        delta = msg.delta
        if delta.WhichOneof("type") != "new_element":
            return
        element = delta.new_element
        if element.WhichOneof("type") == "bidi_component":
            component = element.bidi_component
            if component.id.endswith(SCREEN_SUFFIX):
                run.screen = Screen(component.id, delta.fragment_id, json.loads(component.json or "{}"))
            return
        if element.WhichOneof("type") == "button":
            run.buttons.append(Button(element.button.id, delta.fragment_id, element.button.label))
        text = _element_text(element)
        if text is not None:
            run.texts.append(text)
            if text.startswith("exception: "):
                raise AppError(f"the page raised an exception: {text[11:]}")

    # ------------------------------------------------------------------ plain HTTP/1.1 with keep-alive

    async def _get(self, path: str) -> tuple[int, dict[str, str], bytes]:
        for attempt in (0, 1):  # a kept-alive connection the server has closed meanwhile: open a new one
            if self._http is None:
                self._http = await asyncio.open_connection(self.host, self.port)
            reader, writer = self._http
            request = f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nConnection: keep-alive\r\n"
            if self.cookies:
                request += f"Cookie: {self._cookie_header()}\r\n"
            writer.write((request + "\r\n").encode("latin-1"))
            try:
                await writer.drain()
                status, headers, body = await asyncio.wait_for(_read_response(reader), self.timeout)
                for set_cookie in headers.get("set-cookie", []):
                    name, value = _cookie(set_cookie)
                    if name:
                        self.cookies[name] = value
                return status, {k: v[-1] for k, v in headers.items()}, body
            except (ConnectionError, asyncio.IncompleteReadError):
                writer.close()
                self._http = None
                if attempt:
                    raise
        raise AssertionError("not reached")

    def _cookie_header(self) -> str:
        return "; ".join(f"{name}={value}" for name, value in self.cookies.items())


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, list[str]], bytes]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    status = int(head[0].split()[1])
    headers: dict[str, list[str]] = {}
    for line in head[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers.setdefault(name.strip().lower(), []).append(value.strip())
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"][-1]))
    elif headers.get("transfer-encoding", [""])[-1].lower() == "chunked":
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            parts.append(await reader.readexactly(size + 2))
            if size == 0:
                break
        body = b"".join(part[:-2] for part in parts)
    else:
        body = b""
    return status, headers, body


def _cookie(set_cookie: str) -> tuple[str, str]:
    """The name and value of a Set-Cookie header (its attributes are not needed here)."""
    key, _, value = set_cookie.split(";", 1)[0].partition("=")
    return key.strip(), value.strip()
