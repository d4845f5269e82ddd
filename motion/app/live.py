"""The Live tab's real-time stream (``msync ui``; docs/design.md, "Streaming and the web page"):
the browser's microphone in, talking-head video out, continuously at 25 fps, over one WebSocket
per stream on the page's own server.

**Why a WebSocket, not WebRTC.** WebRTC in Python (aiortc) needs its ICE, SRTP and codec
packages, which this project's offline package index does not carry, a VP8/H.264 encoder per
stream on the server's CPU, and UDP that proxies and firewalls often block; Gradio's WebRTC
component (fastrtc) requires gradio < 6. A WebSocket on the same origin as the page goes
wherever the page goes, and 25 JPEGs a second of a 256² face (~10 kB each) is little traffic.

**Protocol** (the page's ``live.js`` is the client):

1. The Live tab's Start button runs the page's handler, which checks the photo, builds the
   :class:`~motion.stream.Streamer` (compiled, the slow part) and files it in the page's
   :class:`Room` under a random ticket; bad input is a one-line message, as in the other tabs.
2. The page opens ``ROUTE?ticket=…&rate=…``; the ticket is claimed once (one Streamer per
   connection) and answers ``{"type": "ready", "fps", "lookahead_ms", "size",
   "header_bytes"}``.
3. The page sends binary messages: a little-endian float64, the page's clock
   (``performance.now()``, ms) when it sent them, then 16-bit mono PCM at ``rate`` (it sends
   40 ms at a time). The text ``stop`` ends the stream: the Streamer's last frames follow.
4. The server sends each frame as a binary message: :data:`FRAME_HEADER` (the frame's index, the
   page's send time of the audio whose push made it, the ms it spent in the server, the ms of
   that push's compute, the audio samples and frames dropped so far) then a JPEG; and text
   messages ``{"type": "error", "message"}`` (one line) or ``{"type": "end", "frames"}``.

**Bounded.** Audio waiting for the Streamer is held up to :data:`MAX_PENDING_SECONDS`; beyond,
the oldest is dropped (the server cannot keep up) and counted. Encoded frames waiting to go out
are held up to :data:`MAX_OUTBOX_FRAMES` (plus the close's last frames, a finite flush);
beyond, the oldest is dropped (the page or its network cannot keep up) and counted; both counts
go to the page in every frame's header. Waiting audio is pushed in one call (a longer push
costs less per sample), so a slow moment is caught up.

**Pacing** (:class:`Pacer`): frames leave at 25 per second, not in the bursts a push can make
(the Streamer's last ~1.2 s at the close, frames after a slow push); frames waiting behind are
sent faster, in proportion to their number, so that a slow moment is not kept as latency.

**Shutdown.** A closed page closes its socket: the receiving, computing and sending tasks are
cancelled and the Streamer is dropped (a push already running in its thread finishes first).
Unclaimed tickets expire after :data:`TICKET_SECONDS`; at most :data:`MAX_SESSIONS` streams are
ticketed or running at once.
"""
from __future__ import annotations

import asyncio
import collections
import dataclasses
import io
import json
import secrets
import struct
import threading
import time
from typing import Any, Callable

import numpy as np

from syncers.data.layout import FPS, SAMPLE_RATE

ROUTE = "/msync/live"
MAX_PENDING_SECONDS = 1.0       # audio awaiting the Streamer before the oldest is dropped
MAX_OUTBOX_FRAMES = 25          # encoded frames awaiting the socket before the oldest is dropped
MAX_MESSAGE_SECONDS = 1.0       # the longest audio message accepted (the page sends 40 ms)
CATCH_UP_FRAMES = 4             # frames waiting that double the sending speed (Pacer)
LEAD = 0.05                     # frames on time leave up to 5 % early: no latency kept (Pacer)
MAX_SESSIONS = 4
TICKET_SECONDS = 120.0          # an unclaimed Streamer is dropped after this
JPEG_QUALITY = 85
RATES = (8000, 192_000)         # microphone sample rates accepted
# index, page's send time (ms), ms in the server, ms of the push, samples dropped, frames dropped
FRAME_HEADER = struct.Struct("<IdffII")
AUDIO_HEADER = struct.Struct("<d")


def websocket_support() -> str | None:
    """Why the server cannot answer WebSockets (uvicorn needs ``websockets`` or ``wsproto``), or
    None."""
    import importlib.util

    if importlib.util.find_spec("websockets") or importlib.util.find_spec("wsproto"):
        return None
    return "the Live tab needs the websockets package: pip install 'msync[ui]'"


# --------------------------------------------------------------------------- tickets

class RoomFull(Exception):
    """Too many live streams at once (the page shows the message)."""


@dataclasses.dataclass
class _Ticket:
    streamer: Any
    issued: float


class Room:
    """The page's live streams: Streamers built by the Start handler, waiting for their socket
    under a random ticket (claimed once), and the streams running."""

    def __init__(self, max_sessions: int = MAX_SESSIONS, ticket_seconds: float = TICKET_SECONDS,
                 clock: Callable[[], float] = time.monotonic):
        self.max_sessions, self.ticket_seconds, self.clock = max_sessions, ticket_seconds, clock
        self._tickets: dict[str, _Ticket] = {}
        self.running = 0
        self._lock = threading.Lock()        # the Start handler runs in Gradio's worker threads

    def check_space(self) -> None:
        """RoomFull when no stream can start now (before building one in vain)."""
        with self._lock:
            self._check_space()

    def _check_space(self) -> None:
        self._expire()
        if len(self._tickets) + self.running >= self.max_sessions:
            raise RoomFull(f"{self.max_sessions} live streams are already running on this "
                           f"server; stop one (or wait) and press Start again.")

    def issue(self, streamer) -> str:
        with self._lock:
            self._check_space()
            ticket = secrets.token_urlsafe(18)
            self._tickets[ticket] = _Ticket(streamer, self.clock())
            return ticket

    def claim(self, ticket: str | None):
        """The ticket's Streamer (counted as running until :meth:`release`), or None."""
        with self._lock:
            self._expire()
            entry = self._tickets.pop(ticket or "", None)
            if entry is None:
                return None
            self.running += 1
            return entry.streamer

    def release(self) -> None:
        with self._lock:
            self.running -= 1

    @property
    def waiting(self) -> int:
        with self._lock:
            self._expire()
            return len(self._tickets)

    def _expire(self) -> None:
        now = self.clock()
        for ticket in [t for t, e in self._tickets.items() if now - e.issued > self.ticket_seconds]:
            del self._tickets[ticket]


# --------------------------------------------------------------------------- queues

@dataclasses.dataclass
class AudioBatch:
    """Audio waiting for the Streamer: the samples, the page's send time of the last message
    and when it arrived here."""

    pcm: np.ndarray
    sent_ms: float
    received: float


class AudioInbox:
    """Audio messages waiting for the Streamer, at most ``max_samples``: the oldest are dropped
    (and counted) beyond. :meth:`take` gives everything waiting as one batch."""

    def __init__(self, max_samples: int):
        self.max_samples = max_samples
        self._chunks: collections.deque[tuple[np.ndarray, float, float]] = collections.deque()
        self.samples = 0
        self.dropped = 0
        self.closed = False
        self._ready = asyncio.Event()

    def put(self, pcm: np.ndarray, sent_ms: float, received: float) -> None:
        if self.closed:
            return
        self._chunks.append((pcm, sent_ms, received))
        self.samples += pcm.size
        while self.samples > self.max_samples:
            old = self._chunks.popleft()[0]
            self.samples -= old.size
            self.dropped += old.size
        self._ready.set()

    def close(self) -> None:
        self.closed = True
        self._ready.set()

    async def take(self) -> AudioBatch | None:
        """All waiting audio (waits for some); None once closed and empty."""
        while not self._chunks:
            if self.closed:
                return None
            self._ready.clear()
            await self._ready.wait()
        chunks = list(self._chunks)
        self._chunks.clear()
        self.samples = 0
        return AudioBatch(np.concatenate([c[0] for c in chunks]), chunks[-1][1], chunks[-1][2])


@dataclasses.dataclass
class OutFrame:
    index: int
    jpeg: bytes
    sent_ms: float           # the page's send time of the audio that determined the frame
    received: float          # when that audio arrived (server clock)
    compute_ms: float        # the push's compute and encoding
    last: bool = False       # from the Streamer's close: the last speech, at its own speed


class FrameOutbox:
    """Encoded frames waiting for the socket, at most ``max_frames``: the oldest are dropped (and
    counted) beyond. :meth:`get` returns None once closed and empty."""

    def __init__(self, max_frames: int):
        self.max_frames = max_frames
        self._frames: collections.deque[OutFrame] = collections.deque()
        self.dropped = 0
        self.closed = False
        self.error: str | None = None
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._frames)

    def put(self, frame: OutFrame) -> None:
        self._frames.append(frame)
        while len(self._frames) > self.max_frames:
            self._frames.popleft()
            self.dropped += 1
        self._ready.set()

    def close(self, error: str | None = None) -> None:
        self.closed, self.error = True, error
        self._ready.set()

    async def get(self) -> OutFrame | None:
        while not self._frames:
            if self.closed:
                return None
            self._ready.clear()
            await self._ready.wait()
        return self._frames.popleft()


class Pacer:
    """When to send the next frame: one interval after the previous one's slot, or now if that
    has passed, so that a burst (the Streamer's last frames at the close, the frames of a push
    after a slow one) leaves at about ``fps``, and a late frame goes at once and takes its
    sending time as its slot (no burst after it).

    Two things keep pacing from holding latency. A backlog of frames waiting behind the next one
    shortens the interval to ``1 / (1 + backlog / catch_up_frames)`` of it (``catch_up_frames``
    waiting: twice the speed), so that a slow moment's delay is shed within a second or so; and
    the interval is ``1 - lead`` of 1/fps, so that a slot left late by a jittery arrival creeps
    back to the frames' own rhythm (``lead`` of a frame per frame) instead of staying late —
    frames come at the speech's 25 per second, so the stream still shows 25. The close's frames
    are sent with ``catch_up=False``: exactly 1/fps apart, the last speech at its own speed."""

    def __init__(self, fps: float = FPS, clock: Callable[[], float] = time.monotonic,
                 catch_up_frames: float = CATCH_UP_FRAMES, lead: float = LEAD):
        self.interval, self.clock = 1.0 / fps, clock
        self.catch_up_frames, self.lead = catch_up_frames, lead
        self._slot: float | None = None

    def wait(self, backlog: int = 0, catch_up: bool = True) -> float:
        """Seconds to wait before sending the next frame (it takes the slot)."""
        now = self.clock()
        if self._slot is None:
            self._slot = now
            return 0.0
        interval = self.interval * (1.0 - self.lead) / (1.0 + backlog / self.catch_up_frames) \
            if catch_up else self.interval
        self._slot = max(self._slot + interval, now)
        return self._slot - now


# --------------------------------------------------------------------------- the socket

def encode_jpeg(image_SxSx3: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    from PIL import Image  # the renderers' image loading imports PIL anyway

    out = io.BytesIO()
    Image.fromarray(image_SxSx3).save(out, "JPEG", quality=quality)
    return out.getvalue()


def parse_audio(message: bytes, rate: int) -> tuple[np.ndarray, float]:
    """``(int16 samples, the page's send time in ms)`` of one audio message; ValueError with a
    one-line reason when it is not one."""
    size = len(message) - AUDIO_HEADER.size
    if size < 0 or size % 2:
        raise ValueError(f"an audio message is 8 bytes of time then 16-bit samples; got "
                         f"{len(message)} bytes")
    if size // 2 > MAX_MESSAGE_SECONDS * rate:
        raise ValueError(f"an audio message holds at most {MAX_MESSAGE_SECONDS:g} s; got "
                         f"{size / 2 / rate:.2f} s")
    (sent_ms,) = AUDIO_HEADER.unpack_from(message)
    return np.frombuffer(message, "<i2", offset=AUDIO_HEADER.size).copy(), float(sent_ms)


def frame_message(frame: OutFrame, now: float, dropped_samples: int, dropped_frames: int) -> bytes:
    return FRAME_HEADER.pack(frame.index, frame.sent_ms, (now - frame.received) * 1e3,
                             frame.compute_ms, dropped_samples, dropped_frames) + frame.jpeg


class LiveStream:
    """One connection's stream: receive audio → push it into the Streamer (in a thread) →
    encode → pace → send. ``socket`` is a Starlette WebSocket (or anything with its
    ``receive``/``send_bytes``/``send_text``); ``describe(err)`` turns a failure into the page's
    one line."""

    def __init__(self, socket, streamer, rate: int, describe: Callable[[Exception], str] = str,
                 clock: Callable[[], float] = time.monotonic,
                 max_pending_seconds: float = MAX_PENDING_SECONDS,
                 max_outbox_frames: int = MAX_OUTBOX_FRAMES):
        self.socket, self.streamer, self.rate = socket, streamer, rate
        self.describe, self.clock = describe, clock
        self.inbox = AudioInbox(int(max_pending_seconds * rate))
        self.outbox = FrameOutbox(max_outbox_frames)
        self.pacer = Pacer(clock=clock)
        self.sent = 0

    async def run(self) -> None:
        """Until the stream ends (the page's ``stop``, an error) or the page goes away."""
        receive = asyncio.create_task(self._receive())
        compute = asyncio.create_task(self._compute())
        send = asyncio.create_task(self._send())
        try:
            await asyncio.wait({receive, send}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (receive, compute, send):
                task.cancel()
            await asyncio.gather(receive, compute, send, return_exceptions=True)
            self.streamer = None          # a push still running in its thread ends unheard

    async def _receive(self) -> None:
        while True:
            message = await self.socket.receive()
            if message["type"] == "websocket.disconnect":
                return            # run() cancels the rest: no flush for a page that is gone
            if message.get("bytes") is not None:
                try:
                    pcm, sent_ms = parse_audio(message["bytes"], self.rate)
                except ValueError as err:
                    self.outbox.close(str(err))
                    return
                self.inbox.put(pcm, sent_ms, self.clock())
            elif (message.get("text") or "").strip() == "stop":
                self.inbox.close()

    async def _compute(self) -> None:
        try:
            while (batch := await self.inbox.take()) is not None:
                started = self.clock()
                frames = await asyncio.to_thread(self._push, batch.pcm)
                self._queue(frames, batch, started)
            started = self.clock()
            frames = await asyncio.to_thread(self._close)
            self.outbox.max_frames += len(frames)        # a finite flush: none dropped
            self._queue(frames, AudioBatch(np.zeros(0, np.int16), -1.0, started), started,
                        last=True)
            self.outbox.close()
        except asyncio.CancelledError:
            raise
        except Exception as err:  # noqa: BLE001 - every failure becomes the page's one line
            self.outbox.close(self.describe(err))

    def _push(self, pcm: np.ndarray) -> list[tuple[int, bytes]]:
        streamer = self.streamer
        return [] if streamer is None else \
            [(f.index, encode_jpeg(f.image)) for f in streamer.push(pcm, self.rate)]

    def _close(self) -> list[tuple[int, bytes]]:
        streamer = self.streamer
        return [] if streamer is None else [(f.index, encode_jpeg(f.image))
                                            for f in streamer.close()]

    def _queue(self, frames, batch: AudioBatch, started: float, last: bool = False) -> None:
        compute_ms = (self.clock() - started) * 1e3
        for index, jpeg in frames:
            self.outbox.put(OutFrame(index, jpeg, batch.sent_ms, batch.received, compute_ms,
                                     last))

    async def _send(self) -> None:
        while (frame := await self.outbox.get()) is not None:
            wait = self.pacer.wait(len(self.outbox), catch_up=not frame.last)
            if wait > 0:
                await asyncio.sleep(wait)
            await self.socket.send_bytes(frame_message(frame, self.clock(), self.inbox.dropped,
                                                       self.outbox.dropped))
            self.sent += 1
        if self.outbox.error is not None:
            await self.socket.send_text(json.dumps({"type": "error",
                                                    "message": self.outbox.error}))
        else:
            await self.socket.send_text(json.dumps({"type": "end", "frames": self.sent}))


def endpoint(room: Room, describe: Callable[[Exception], str] = str):
    """The Starlette WebSocket endpoint of :data:`ROUTE` for ``room``'s streams."""

    async def live(websocket) -> None:
        await websocket.accept()
        try:
            rate = int(websocket.query_params.get("rate", SAMPLE_RATE))
        except ValueError:
            rate = -1
        if not RATES[0] <= rate <= RATES[1]:
            await _refuse(websocket, f"the microphone's sample rate must be "
                                     f"{RATES[0]}..{RATES[1]} Hz")
            return
        streamer = room.claim(websocket.query_params.get("ticket"))
        if streamer is None:
            await _refuse(websocket, "this live stream has expired or is already running; "
                                     "press Start again")
            return
        try:
            await websocket.send_text(json.dumps({
                "type": "ready", "fps": FPS, "size": int(streamer.size),
                "header_bytes": FRAME_HEADER.size,
                "lookahead_ms": round(streamer.delay_frames * 1000 / FPS, 1)}))
            await LiveStream(websocket, streamer, rate, describe).run()
        except Exception:  # noqa: BLE001 - a page gone mid-send: nothing to tell it
            pass
        finally:
            room.release()
            await _close(websocket)

    return live


async def _refuse(websocket, message: str) -> None:
    await websocket.send_text(json.dumps({"type": "error", "message": message}))
    await _close(websocket)


async def _close(websocket) -> None:
    try:
        await websocket.close()
    except Exception:  # noqa: BLE001, S110 - already closed by the page
        pass


def route(room: Room, describe: Callable[[Exception], str] = str):
    """The route to add to the page's server (``launch(app_kwargs={"routes": [...]})``)."""
    from starlette.routing import WebSocketRoute

    return WebSocketRoute(ROUTE, endpoint(room, describe))
