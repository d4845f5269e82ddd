"""The Live tab's server side (``motion.app.live``) without a browser: the pacing of frames at
25 fps (bursts spread, a backlog caught up), the bounded audio and frame queues (the oldest
dropped and counted), the tickets (claimed once, expiring, a bounded number), and whole streams
over Starlette's in-process WebSocket client with a stand-in Streamer: frames in order with
their header, ``stop`` flushing the last frames, a closed page ending the stream, bad tickets,
bad audio and a failing Streamer each a one-line message. ``tests/test_ui.py`` drives the real
page in Chromium."""
from __future__ import annotations

import io
import json
import time

import numpy as np
import pytest

from motion.app import live
from syncers.run.errors import InputError

pytest.importorskip("starlette")
pytest.importorskip("httpx")          # Starlette's test client


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_pacer_spreads_a_burst_at_25_fps_and_sends_late_frames_at_once():
    clock = Clock()
    pacer = live.Pacer(fps=25, clock=clock)
    waits = [pacer.wait(catch_up=False) for _ in range(5)]   # the close's frames, at once
    assert waits == pytest.approx([0.0, 0.04, 0.08, 0.12, 0.16])
    clock.now += 1.0                                     # the stream paused: no burst after
    assert pacer.wait() == 0.0
    assert pacer.wait() == pytest.approx(0.038)          # 5 % early at most


def test_pacer_sheds_a_backlog_faster_the_longer_it_is():
    clock = Clock()
    pacer = live.Pacer(fps=25, clock=clock, catch_up_frames=4, lead=0.0)
    pacer.wait()
    assert pacer.wait(backlog=0) == pytest.approx(0.04)
    assert pacer.wait(backlog=4) == pytest.approx(0.04 + 0.02)
    # 10 frames ready at once after a slow push: out within 0.25 s, not 0.4 s
    clock.now += 1.0
    slots = [pacer.wait(backlog=9 - i) for i in range(10)]
    assert slots[-1] < 0.25 and all(np.diff(slots) > 0)


def test_pacer_does_not_keep_a_late_arrival_as_latency():
    """Frames every 40 ms, one of them 30 ms late: the slots come back to the arrivals."""
    clock = Clock()
    pacer = live.Pacer(fps=25, clock=clock)
    held = []
    for i in range(40):
        clock.now = 100.0 + 0.04 * i + (0.03 if i == 5 else 0.0)
        held.append(pacer.wait())
    assert max(held) < 0.03 and held[-1] == 0.0, np.round(held, 4)


def _run(coroutine):
    import asyncio
    return asyncio.run(coroutine)


def test_audio_inbox_is_bounded_and_hands_over_everything_waiting():
    async def scenario():
        inbox = live.AudioInbox(max_samples=1600)
        for i in range(5):                               # 5 × 640 samples into 1600
            inbox.put(np.full(640, i, np.int16), sent_ms=float(i), received=float(i))
            assert inbox.samples <= 1600
        assert inbox.dropped == 3 * 640
        batch = await inbox.take()
        assert batch.pcm.tolist() == [3] * 640 + [4] * 640 and batch.sent_ms == 4.0
        inbox.close()
        assert await inbox.take() is None
    _run(scenario())


def test_frame_outbox_drops_the_oldest_beyond_its_bound():
    async def scenario():
        outbox = live.FrameOutbox(max_frames=3)
        for i in range(7):
            outbox.put(live.OutFrame(i, b"", 0.0, 0.0, 0.0))
            assert len(outbox) <= 3
        assert outbox.dropped == 4
        outbox.close()
        assert [(await outbox.get()).index for _ in range(3)] == [4, 5, 6]
        assert await outbox.get() is None
    _run(scenario())


def test_tickets_are_claimed_once_expire_and_are_bounded():
    clock = Clock()
    room = live.Room(max_sessions=2, ticket_seconds=60, clock=clock)
    first = room.issue("streamer 1")
    second = room.issue("streamer 2")
    with pytest.raises(live.RoomFull, match="2 live streams are already running"):
        room.issue("streamer 3")
    assert room.claim(first) == "streamer 1" and room.running == 1
    assert room.claim(first) is None                     # once
    clock.now += 61
    assert room.claim(second) is None and room.waiting == 0   # expired
    room.issue("streamer 3")                             # one running, one waiting: full
    with pytest.raises(live.RoomFull):
        room.issue("streamer 4")
    room.release()
    room.issue("streamer 4")


def test_the_start_handler_answers_a_ticket_or_one_line(tmp_path):
    from motion.app import ui

    config = ui.page_config([], [], 1.0, tmp_path)
    full = json.loads(ui.live_open(config, live.Room(max_sessions=0), None, ui.BUNDLED, 1, 1))
    assert full == {"error": "0 live streams are already running on this server; stop one (or "
                             "wait) and press Start again."}
    none = json.loads(ui.live_open(config, live.Room(), None, ui.BUNDLED, 1, 1))
    assert none == {"error": "Please add the photo first."}
    unknown = json.loads(ui.live_open(config, live.Room(), None, "elsewhere", 1, 1))
    assert unknown == {"error": "Unknown model 'elsewhere': choose one of the list."}


class FakeStreamer:
    """The Streamer's interface: frame i is out once the samples up to 640 (i + 1 + delay)
    are in; ``close`` gives the rest of the whole frames. Frame i's image is filled with i."""

    size = 16

    def __init__(self, delay_frames: int = 3, push_seconds: float = 0.0,
                 fail_at: int | None = None):
        self.delay_frames, self.push_seconds, self.fail_at = delay_frames, push_seconds, fail_at
        self.samples = 0
        self.out = 0
        self.pushes = 0
        self.closed = False
        self.rates = set()

    def _frames(self, up_to):
        frames = []
        while self.out < up_to:
            image = np.full((self.size, self.size, 3), self.out % 256, np.uint8)
            frames.append(type("Frame", (), {"index": self.out, "image": image}))
            self.out += 1
        return frames

    def push(self, pcm, rate):
        self.pushes += 1
        self.rates.add(rate)
        if self.fail_at is not None and self.pushes >= self.fail_at:
            raise InputError(None, "the generator produced NaN keypoints")
        time.sleep(self.push_seconds)
        self.samples += np.asarray(pcm).size
        return self._frames(max(0, self.samples // 640 - self.delay_frames))

    def close(self):
        self.closed = True
        return self._frames(self.samples // 640)


def _client(room):
    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    return TestClient(Starlette(routes=[live.route(room)]))


def _audio(seconds, sent_ms=0.0, chunk=640):
    samples = (np.sin(np.arange(int(seconds * 16000)) / 9) * 8000).astype("<i2")
    return [live.AUDIO_HEADER.pack(sent_ms + i) + samples[i:i + chunk].tobytes()
            for i in range(0, samples.size, chunk)]


def _frame(message: bytes) -> dict:
    from PIL import Image

    index, sent, server_ms, compute_ms, dropped_samples, dropped_frames = \
        live.FRAME_HEADER.unpack_from(message)
    image = np.asarray(Image.open(io.BytesIO(message[live.FRAME_HEADER.size:])))
    return {"index": index, "sent": sent, "server_ms": server_ms, "compute_ms": compute_ms,
            "dropped_samples": dropped_samples, "dropped_frames": dropped_frames,
            "image": image, "at": time.monotonic()}


def _read_until_end(socket) -> tuple[list[dict], dict]:
    frames = []
    while True:
        message = socket.receive()
        if message.get("bytes") is not None:
            frames.append(_frame(message["bytes"]))
        else:
            text = json.loads(message["text"])
            if text["type"] in ("end", "error"):
                return frames, text


def test_a_stream_sends_every_frame_in_order_paced_and_stop_flushes_the_rest():
    room = live.Room()
    streamer = FakeStreamer(delay_frames=30)             # the close flushes more than
    ticket = room.issue(streamer)                        # the outbox's bound: none dropped
    with _client(room).websocket_connect(f"{live.ROUTE}?ticket={ticket}&rate=16000") as socket:
        ready = json.loads(socket.receive_text())
        assert ready == {"type": "ready", "fps": 25, "size": 16, "lookahead_ms": 1200.0,
                         "header_bytes": live.FRAME_HEADER.size}
        audio = _audio(2.0, sent_ms=5000.0)             # 50 frames of audio, in two
        for taken, half in ((16000, audio[:25]), (32000, audio[25:])):  # halves of the 1 s
            for message in half:                                          # inbox's size
                socket.send_bytes(message)
            # A loaded machine may not take the first half before the second arrives; the
            # inbox would then drop its oldest audio, as it should (tested below).
            deadline = time.monotonic() + 60
            while streamer.samples < taken and time.monotonic() < deadline:
                time.sleep(0.01)
        socket.send_text("stop")
        frames, end = _read_until_end(socket)
    assert end == {"type": "end", "frames": 50}
    assert [f["index"] for f in frames] == list(range(50))
    assert streamer.closed and streamer.rates == {16000}
    for f in frames:
        assert abs(float(f["image"].mean()) - f["index"]) < 3      # the frame's own image
        assert f["dropped_samples"] == 0 and f["dropped_frames"] == 0
        assert f["server_ms"] >= 0 and f["compute_ms"] >= 0
    assert frames[0]["sent"] >= 5000.0                   # the page's clock, echoed
    # the last 30 frames came from the close at once, and left at 25 per second
    tail = [f["at"] for f in frames[-30:]]
    assert tail[-1] - tail[0] > 29 * 0.04 * 0.85, np.diff(tail)
    assert room.running == 0 and room.waiting == 0


def test_a_slow_streamer_drops_audio_and_says_so_in_the_headers():
    room = live.Room()
    streamer = FakeStreamer(delay_frames=0, push_seconds=0.3)
    ticket = room.issue(streamer)
    with _client(room).websocket_connect(f"{live.ROUTE}?ticket={ticket}&rate=16000") as socket:
        socket.receive_text()
        for message in _audio(4.0):                      # 4 s at once into a 1 s inbox
            socket.send_bytes(message)
        socket.send_text("stop")
        frames, end = _read_until_end(socket)
    assert end["type"] == "end"
    dropped = frames[-1]["dropped_samples"]
    assert dropped > 0 and dropped % 640 == 0
    assert streamer.samples == 4 * 16000 - dropped       # the rest was pushed, not lost
    assert len(frames) == streamer.samples // 640


def test_a_closed_page_ends_the_stream_and_frees_its_place():
    room = live.Room(max_sessions=1)
    streamer = FakeStreamer(delay_frames=2)
    ticket = room.issue(streamer)
    with _client(room).websocket_connect(f"{live.ROUTE}?ticket={ticket}&rate=16000") as socket:
        socket.receive_text()
        for message in _audio(0.4):
            socket.send_bytes(message)
        socket.receive_bytes()                           # a frame came: the stream runs
        assert room.running == 1
    deadline = time.monotonic() + 10
    while room.running and time.monotonic() < deadline:
        time.sleep(0.02)
    assert room.running == 0 and not streamer.closed     # no flush for a page that is gone
    room.issue(FakeStreamer())                           # its place is free again


@pytest.mark.parametrize("query, message", [
    ("ticket=nonsense&rate=16000", "has expired or is already running"),
    ("rate=16000", "has expired or is already running"),
    ("ticket=x&rate=44", "sample rate must be 8000..192000 Hz"),
    ("ticket=x&rate=fast", "sample rate must be 8000..192000 Hz"),
])
def test_bad_connections_get_one_line(query, message):
    with _client(live.Room()).websocket_connect(f"{live.ROUTE}?{query}") as socket:
        reply = json.loads(socket.receive_text())
    assert reply["type"] == "error" and message in reply["message"], reply


@pytest.mark.parametrize("payload, message", [
    (b"\x00" * 9, "8 bytes of time then 16-bit samples"),
    (b"\x00" * 3, "8 bytes of time then 16-bit samples"),
    (b"\x00" * (8 + 2 * 16001), "at most 1 s"),
])
def test_bad_audio_is_one_line(payload, message):
    room = live.Room()
    ticket = room.issue(FakeStreamer())
    with _client(room).websocket_connect(f"{live.ROUTE}?ticket={ticket}&rate=16000") as socket:
        socket.receive_text()
        socket.send_bytes(payload)
        frames, reply = _read_until_end(socket)
    assert reply["type"] == "error" and message in reply["message"], reply
    assert "\n" not in reply["message"]


def test_a_failing_streamer_is_one_line_and_the_stream_ends():
    room = live.Room()
    ticket = room.issue(FakeStreamer(fail_at=3))
    describe = lambda err: f"described: {err}"
    from starlette.applications import Starlette
    from starlette.testclient import TestClient
    client = TestClient(Starlette(routes=[live.route(room, describe)]))
    with client.websocket_connect(f"{live.ROUTE}?ticket={ticket}&rate=16000") as socket:
        socket.receive_text()
        for message in _audio(1.0):
            socket.send_bytes(message)
            time.sleep(0.005)
        frames, reply = _read_until_end(socket)
    assert reply == {"type": "error",
                     "message": "described: the generator produced NaN keypoints"}
    deadline = time.monotonic() + 10
    while room.running and time.monotonic() < deadline:
        time.sleep(0.02)
    assert room.running == 0


def test_another_rate_reaches_the_streamer():
    room = live.Room()
    streamer = FakeStreamer()
    ticket = room.issue(streamer)
    with _client(room).websocket_connect(f"{live.ROUTE}?ticket={ticket}&rate=48000") as socket:
        socket.receive_text()
        socket.send_bytes(_audio(0.1)[0])
        socket.send_text("stop")
        _read_until_end(socket)
    assert streamer.rates == {48000}


def test_jpeg_round_trip():
    from PIL import Image

    image = np.zeros((32, 32, 3), np.uint8)
    image[:, 16:] = 200
    decoded = np.asarray(Image.open(io.BytesIO(live.encode_jpeg(image))))
    assert decoded.shape == (32, 32, 3) and np.abs(decoded.astype(int) - image).mean() < 3



class SlowPage:
    """A socket whose page takes ``send_seconds`` per frame (a slow network or device): the
    audio comes at once, then ``stop``."""

    def __init__(self, messages, send_seconds):
        self.messages = list(messages)
        self.send_seconds = send_seconds
        self.frames: list[dict] = []
        self.texts: list[dict] = []

    async def receive(self):
        import asyncio
        if self.messages:
            return {"type": "websocket.receive", "bytes": self.messages.pop(0)}
        if self.messages is not None:
            self.messages = None
            return {"type": "websocket.receive", "text": "stop"}
        await asyncio.sleep(3600)

    async def send_bytes(self, data):
        import asyncio
        await asyncio.sleep(self.send_seconds)
        self.frames.append(_frame(data))

    async def send_text(self, text):
        self.texts.append(json.loads(text))


def test_a_slow_page_gets_the_newest_frames_and_the_count_of_those_dropped():
    import asyncio

    page = SlowPage(_audio(3.0), send_seconds=0.1)        # 10 frames/s for 75 frames
    stream = live.LiveStream(page, FakeStreamer(delay_frames=0), 16000, max_outbox_frames=5,
                             max_pending_seconds=10.0)          # all the audio is pushed
    longest = []

    async def run():
        watch = asyncio.create_task(watch_outbox())
        await stream.run()
        watch.cancel()

    async def watch_outbox():
        while True:
            longest.append(len(stream.outbox))
            await asyncio.sleep(0.01)

    asyncio.run(asyncio.wait_for(run(), 60))
    assert page.texts == [{"type": "end", "frames": len(page.frames)}]
    assert max(longest) <= 5                              # bounded
    dropped = page.frames[-1]["dropped_frames"]
    assert dropped > 0 and len(page.frames) + dropped == 75
    indices = [f["index"] for f in page.frames]
    assert indices == sorted(indices) and indices[-1] == 74   # the newest survive


def test_the_page_offers_the_bundled_low_latency_model_and_live_streams_with_it(tmp_path):
    from motion import talking_head
    from motion.app import ui

    config = ui.page_config([], [], 1.0, tmp_path)
    assert list(config.models)[:2] == [ui.BUNDLED, ui.BUNDLED_LOW_LATENCY]
    assert config.models[ui.BUNDLED_LOW_LATENCY] == str(talking_head.LOW_LATENCY_MODEL_DIR)
    low = talking_head.load(config.models[ui.BUNDLED_LOW_LATENCY], latency="low")
    full = talking_head.load(config.models[ui.BUNDLED])
    assert low.generator.config.lookahead == 5 < full.generator.config.lookahead
