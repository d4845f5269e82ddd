"""The Live tab in Chromium, measured: ``msync ui`` with a model, Chromium (Playwright) whose fake
microphone plays speech, Start, ``--seconds`` of streaming, Stop; prints one JSON object — the
frames per second drawn on the page's canvas (overall and per second), and the latency by stage:

- ``lookahead_ms``: the Streamer's look-ahead (``Streamer.delay_frames``): how long a frame's
  audio waits for the audio after it, before it can be computed at all;
- ``audio_to_drawn_ms``: from the page sending the 40 ms message that ends a frame's audio to
  that frame drawn (look-ahead + the chunk + transport + server + decoding and drawing);
- ``chunk_to_drawn_ms``: from the page sending the message whose push determined the frame to
  the frame drawn, split into ``server_ms`` (its arrival to the frame leaving: waiting, the
  push's compute, JPEG, pacing), ``compute_ms`` (the push and JPEGs alone), ``decode_draw_ms``
  (the frame's arrival in the page to drawn) and the rest, transport both ways.

Screenshots of the page every few seconds go to ``--out``.

    PYTHONPATH=. .venv/bin/python bench/bench_live.py --photo PHOTO --speech A.wav [B.wav ...] \\
        [--model RUN] [--seconds 25] --out /tmp/live

Without ``--model`` the tab's default is streamed (the bundled demo model); ``--model
motion/assets/demo_model_low_latency`` chooses the bundled low-latency one.

The speech files are joined (16 kHz mono) and repeated to fill the time; Chromium loops it.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CHROMIUM = "/usr/bin/chromium"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def speech_wav(files: list[str], seconds: float, out: Path) -> Path:
    """The files joined at 16 kHz mono, repeated to at least ``seconds``, as a 16-bit wav."""
    import soundfile

    from syncers.data.features import load_audio

    parts = [load_audio(f) for f in files]
    joined = np.concatenate(parts)
    repeat = int(np.ceil(seconds * 16000 / joined.size))
    soundfile.write(out, np.tile(joined, repeat), 16000, subtype="PCM_16")
    return out


def _stats(values) -> dict:
    values = np.asarray(values, np.float64)
    if values.size == 0:
        return {}
    return {"p50": round(float(np.percentile(values, 50)), 1),
            "p95": round(float(np.percentile(values, 95)), 1),
            "max": round(float(values.max()), 1), "n": int(values.size)}


STATE = """() => { const s = window.msyncLive.state; return s && {
    drawn: s.stats.drawn, received: s.stats.received, skipped: s.stats.skipped,
    drawTimes: s.stats.drawTimes, latency: s.stats.latency, latencyAudio: s.stats.latencyAudio,
    serverMs: s.stats.serverMs, computeMs: s.stats.computeMs, decodeMs: s.stats.decodeMs,
    lookahead: s.lookahead, error: s.error, ended: s.ended, droppedAudio: s.droppedAudio,
    serverDroppedSamples: s.serverDroppedSamples, serverDroppedFrames: s.serverDroppedFrames,
    now: performance.now() }; }"""


def measure(args) -> dict:
    from playwright.sync_api import sync_playwright

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-live-"))
    mic = speech_wav(args.speech, args.seconds + 30, work / "mic.wav")
    port = _free_port()
    argv = [sys.executable, "-m", "motion.app.cli", "ui", "--port", str(port)]
    if args.model:
        argv += ["--model", args.model]
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        line = server.stderr.readline()
        if not line.startswith("msync ui: serving"):
            raise SystemExit(f"msync ui did not start: {line}{server.stderr.read()}")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True,
                args=["--no-sandbox", "--disable-gpu", "--use-fake-ui-for-media-stream",
                      "--use-fake-device-for-media-stream",
                      f"--use-file-for-fake-audio-capture={mic}"])
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            context.grant_permissions(["microphone"])
            page = context.new_page()
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_selector("#gen-run", timeout=120_000)
            page.get_by_role("tab", name="Live").click()
            page.locator("#live-photo input[type=file]").set_input_files(args.photo)
            page.locator("#live-photo img").first.wait_for(timeout=120_000)
            if args.model:
                page.locator("#live-model input").click()
                page.get_by_role("option", name=Path(args.model).name).click()
            model_label = page.locator("#live-model input").input_value()
            clicked = time.perf_counter()
            page.locator("#live-start").click()
            page.wait_for_function("() => window.msyncLive.state && (window.msyncLive.state."
                                   "stats.drawn > 0 || window.msyncLive.state.error)",
                                   timeout=300_000)
            first_frame_s = time.perf_counter() - clicked
            began = time.perf_counter()
            shot = 0
            while time.perf_counter() - began < args.seconds:
                time.sleep(min(5.0, args.seconds - (time.perf_counter() - began)))
                page.screenshot(path=os.fspath(out / f"live-{shot:02d}.png"), full_page=True)
                shot += 1
            state = page.evaluate(STATE)
            line_text = page.locator("#live-line").inner_text()
            page.locator("#live-stop").click()
            page.wait_for_function("() => window.msyncLive.state.ended || "
                                   "window.msyncLive.state.error", timeout=60_000)
            final = page.evaluate(STATE)
            page.screenshot(path=os.fspath(out / "live-stopped.png"), full_page=True)
            final_line = page.locator("#live-line").inner_text()
            browser.close()
    finally:
        server.terminate()
        server.wait(30)
    if state["error"]:
        raise SystemExit(f"the stream failed: {state['error']}")
    times = np.asarray(state["drawTimes"])
    window = times[times >= times[0] + args.warmup * 1000.0]
    span = (window[-1] - window[0]) / 1000.0
    per_second = np.histogram(window, bins=np.arange(window[0], window[-1], 1000.0))[0]
    chunk = np.asarray(state["latency"])
    server_ms = np.asarray(state["serverMs"])
    decode = np.asarray(state["decodeMs"])
    n = min(chunk.size, server_ms.size, decode.size)
    transport = chunk[-n:] - server_ms[-n:] - decode[-n:]
    return {
        "model": model_label, "photo": args.photo,
        "speech": args.speech, "seconds_streamed": args.seconds,
        "start_to_first_frame_s": round(first_frame_s, 2),
        "drawn_fps": round((window.size - 1) / span, 2), "measured_over_s": round(span, 1),
        "per_second_drawn": {"min": int(per_second.min()), "median": float(np.median(per_second)),
                             "max": int(per_second.max())},
        "frames_drawn": state["drawn"], "frames_received": state["received"],
        "frames_skipped": state["skipped"],
        "dropped": {"audio_s_page": state["droppedAudio"],
                    "audio_samples_server": state["serverDroppedSamples"],
                    "frames_server": state["serverDroppedFrames"]},
        "lookahead_ms": state["lookahead"],
        "audio_to_drawn_ms": _stats(state["latencyAudio"][-args.seconds * 20:]),
        "chunk_to_drawn_ms": _stats(chunk[-args.seconds * 20:]),
        "server_ms": _stats(server_ms[-args.seconds * 20:]),
        "compute_ms": _stats(state["computeMs"][-args.seconds * 20:]),
        "decode_draw_ms": _stats(decode[-args.seconds * 20:]),
        "transport_ms": _stats(transport[-args.seconds * 20:]),
        "status_line": line_text, "final_line": final_line,
        "frames_after_stop": final["drawn"] - state["drawn"],
        "screenshots": sorted(os.fspath(p) for p in out.glob("live-*.png")),
        "loadavg": [round(v, 2) for v in os.getloadavg()], "cpu_count": os.cpu_count()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photo", required=True)
    parser.add_argument("--speech", nargs="+", required=True)
    parser.add_argument("--model", default=None, help="a saved run (default: the bundled one)")
    parser.add_argument("--seconds", type=int, default=25)
    parser.add_argument("--warmup", type=float, default=2.0,
                        help="seconds after the first frame left out of the fps")
    parser.add_argument("--out", required=True, help="folder for the screenshots")
    args = parser.parse_args()
    print(json.dumps(measure(args), indent=1))


if __name__ == "__main__":
    main()
