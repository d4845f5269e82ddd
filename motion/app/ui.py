"""``msync ui`` (:func:`ui_command`): a web page over msync — Generate, Analyse, Live
(docs/design.md, "Streaming and the web page"). Gradio, from the optional extra ``msync[ui]``.

- **Generate**: a photo (upload or webcam snapshot) and speech (upload or microphone recording),
  a model (the bundled one or a run given with ``--model``), head- and lip-scale sliders and
  the renderer → ``msync generate``'s video (``motion.app.generate.generate_video``, the
  function the command calls), with the mp4 and the
  keypoints npz to download, a progress bar while it works.
- **Analyse**: talking-head videos uploaded, or a prepared dataset given with ``--data`` →
  ``msync analyze``'s Table 2, its plots and its JSON (``motion.app.analyze``).
- **Live**: Start opens the browser's microphone; its audio streams to the server over a
  WebSocket in 40 ms messages into a ``motion.stream.Streamer`` (one per connection), and the
  frames come back as JPEGs drawn on a canvas at 25 fps, the Streamer's look-ahead behind the
  voice (``motion.app.live``: the protocol, the bounded queues, the pacing; ``live.js``: the
  page's side). Stop closes the microphone; the last frames follow.

**Safety.** The server listens on 127.0.0.1 unless ``--host`` says otherwise. Uploads larger
than ``--max-upload-mb`` are refused (by Gradio, and again by each handler). Every upload is
checked by its content — PIL for photos, the audio decoder for speech, ffmpeg's probe for
videos — never by its name. Models and datasets are offered by label; the server maps a label
to a path from its own command line and opens no path a client sends (uploads land in the
server's own temporary folder, removed when it stops). Bad input shows a readable message in
the page (the file's name, never the server's path), never a traceback; an internal error shows
one line too.
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import io
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import numpy as np

from motion import talking_head
from motion.app import analyze as app_analyze
from motion.app import generate as app_gen
from motion.app import live
from motion.app import stream as app_stream
from motion.saved_model import check_model
from motion.talking_head import GenerationOptions
from syncers.data import face
from syncers.data import prepare as app_prepare
from syncers.data.features import Speech, open_speech
from syncers.data.measures import SILENCE_RMS
from syncers.data.video import probe
from syncers.run.errors import InputError, optional_import

BUNDLED = "bundled demo model"
# 0.2 s of look-ahead; offered, not the default: its faces distort more (docs/design.md, "Live")
BUNDLED_LOW_LATENCY = "bundled low-latency model"
RENDERERS = ("default for the model", "mesh", "warp")
INSTALL = "pip install 'msync[ui]'"


@dataclasses.dataclass(frozen=True)
class PageConfig:
    """What the server offers: model and dataset labels → paths from its command line."""

    models: dict[str, str | None]
    datasets: dict[str, str]
    max_upload_bytes: int
    workdir: Path
    analyze_config: str | None = None


def page_config(models: list[str], datasets: list[str], max_upload_mb: float, workdir: Path,
                analyze_config: str | None = None) -> PageConfig:
    """Labels for the ``--model`` runs and ``--data`` datasets (each checked to exist: a bad
    one is an InputError at start, one line)."""
    model_map: dict[str, str | None] = {BUNDLED: None}
    if (talking_head.LOW_LATENCY_MODEL_DIR / "model.json").is_file():
        model_map[BUNDLED_LOW_LATENCY] = os.fspath(talking_head.LOW_LATENCY_MODEL_DIR)
    for path in models:
        root = Path(path)
        check_model(root)          # all of load_model's checks, parameters included
        model_map[_label(root, model_map)] = os.fspath(root)
    dataset_map: dict[str, str] = {}
    for path in datasets:
        root = Path(path)
        if not (root / "manifest.json").is_file():
            raise InputError(path, "--data: not a prepared dataset (no manifest.json; make one "
                                   "with `msync data prepare`)")
        dataset_map[_label(root, dataset_map)] = os.fspath(root)
    if analyze_config is not None and not Path(analyze_config).is_file():
        raise InputError(analyze_config, "--analyze-config: no such file")
    return PageConfig(model_map, dataset_map, int(max_upload_mb * 1e6), workdir, analyze_config)


def _label(path: Path, taken: dict) -> str:
    name = path.name or os.fspath(path)
    label, n = name, 2
    while label in taken:
        label, n = f"{name} ({n})", n + 1
    return label


# --------------------------------------------------------------------------- messages

class PageError(Exception):
    """A message for the page's status box (bad input, in the user's words)."""


def readable(err: Exception, names: dict[str, str]) -> str:
    """The one-line message of ``err`` with every server path replaced by what the user knows
    it as (``names``: server path → "the photo" / its file name)."""
    if isinstance(err, InputError):
        subject = names.get(err.path or "", None)
        if subject is None and err.path is not None:
            subject = names.get(os.path.realpath(err.path), Path(err.path).name)
        text = err.problem if err.path is None else f"{subject}: {err.problem}"
    elif isinstance(err, PageError):
        text = str(err)
    else:
        text = f"internal error: {type(err).__name__}: {str(err).strip().splitlines()[0][:200]}" \
            if str(err).strip() else f"internal error: {type(err).__name__}"
    for path, name in names.items():
        text = text.replace(path, name)
    for flag, control in _CONTROLS.items():
        text = text.replace(flag, control)
    return text


# The command line's advice, in the page's words.
_CONTROLS = {"use --no-crop to animate the centre of the image":
             "tick \u201cNo face detection\u201d to animate the centre of the picture",
             "--head-scale": "Head motion", "--lip-scale": "Lip motion"}


def _uploaded(path: str | None, what: str, config: PageConfig, names: dict[str, str]) -> str:
    """An upload's server path, checked for presence and size; registers its name."""
    if not path:
        raise PageError(f"Please add the {what} first.")
    names[path] = f"the {what}"
    size = os.path.getsize(path)
    if size > config.max_upload_bytes:
        raise PageError(f"The {what} is {size / 1e6:.1f} MB; this page accepts files up to "
                        f"{config.max_upload_bytes / 1e6:g} MB.")
    return path


def check_photo(path: str) -> np.ndarray:
    """The photo ``[H, W, 3]`` read by its content (``syncers.data.face.load_image``)."""
    return face.load_image(path)


def check_speech(path: str) -> Speech:
    """The speech (16 kHz, ``syncers.data.features.open_speech``) read by its content; refused
    when too short or silent."""
    speech = open_speech(path)
    seconds = speech.seconds
    if seconds < app_gen.MIN_AUDIO_SECONDS:
        raise InputError(path, f"it is {seconds:.2f} s long; a video needs at least "
                               f"{app_gen.MIN_AUDIO_SECONDS:g} s of speech")
    energy = sum(float(np.sum(np.square(block, dtype=np.float64))) for block in speech.blocks())
    if np.sqrt(energy / speech.n_samples) < SILENCE_RMS:
        raise InputError(path, "it is silent (no speech to follow); record or upload speech")
    return speech


# --------------------------------------------------------------------------- Generate

def generate_video(config: PageConfig, photo: str | None, speech: str | None, model: str,
                   head_scale: float, lip_scale: float, renderer: str, no_crop: bool,
                   progress: Callable[[float, str], Any] = lambda *a: None
                   ) -> tuple[str, list[str], str]:
    """``(mp4, [mp4, keypoints npz], message)`` for the Generate tab; bad input raises
    :class:`PageError` with a readable message."""
    names: dict[str, str] = {}
    try:
        if model not in config.models:
            raise PageError(f"Unknown model {model!r}: choose one of the list.")
        photo = _uploaded(photo, "photo", config, names)
        speech = _uploaded(speech, "speech", config, names)
        progress(0.02, "checking the photo and the speech")
        image = check_photo(photo)
        speech_read = check_speech(speech)
        out = config.workdir / "generated" / uuid.uuid4().hex
        out.mkdir(parents=True)
        video, keypoints = out / "msync.mp4", out / "keypoints.npz"
        loaded = talking_head.load(config.models[model])
        options = talking_head.resolve(loaded, GenerationOptions(
            head_scale=float(head_scale), lip_scale=float(lip_scale),
            renderer=None if renderer == RENDERERS[0] else renderer, crop=not no_crop))
        progress(0.05, "generating (the first run compiles the model: a minute)")
        made = app_gen.generate_video(loaded, image, speech_read, options, video,
                                      image_name=photo, keypoints_out=keypoints)
    except Exception as err:  # noqa: BLE001 - every failure becomes a message in the page
        raise PageError(readable(err, names)) from None
    return (os.fspath(video), [os.fspath(video), os.fspath(keypoints)],
            f"Done: {made.n_frames} frames, {made.seconds:.2f} s of speech.")


# --------------------------------------------------------------------------- Analyse

def analyse(config: PageConfig, videos: list[str] | None, dataset: str | None, scales: int,
            points: str, progress: Callable[[float, str], Any] = lambda *a: None
            ) -> tuple[str, list[str], dict, list[str]]:
    """``(report markdown, plots, report dict, [report.json, report.md])``."""
    names: dict[str, str] = {}
    try:
        out = config.workdir / "analysed" / uuid.uuid4().hex
        if videos:
            folder = out / "videos"
            folder.mkdir(parents=True)
            for i, path in enumerate(videos):
                path = _uploaded(path, f"video {i + 1}", config, names)
                names[path] = f"video {i + 1} ({Path(path).name})"
                probe(path)                                    # a video, by its content
                shutil.copy(path, folder / f"video_{i + 1:03d}{Path(path).suffix.lower()}")
            progress(0.05, "finding faces and landmarks in the videos")
            data = out / "dataset"
            app_prepare.prepare_dataset(folder, data, app_prepare.PrepareOptions(split_by="clip"))
            names[os.fspath(data)] = "the uploaded videos"
        elif dataset:
            if dataset not in config.datasets:
                raise PageError(f"Unknown dataset {dataset!r}: choose one of the list.")
            data = Path(config.datasets[dataset])
            names[os.fspath(data)] = f"dataset {dataset!r}"
        else:
            raise PageError("Please upload talking-head videos or choose a prepared dataset.")
        progress(0.2, "training a syncer per scale, then scoring")
        with contextlib.redirect_stdout(io.StringIO()):
            report = app_analyze.analyze(data, out, app_analyze.parse_points(points),
                                         int(scales), config_path=config.analyze_config)
    except Exception as err:  # noqa: BLE001 - every failure becomes a message in the page
        raise PageError(readable(err, names)) from None
    plots = sorted(os.fspath(p) for p in out.glob("*.png"))
    # The page shows the plots beside the report: drop its image links (relative to a folder
    # the browser cannot see), and name the data as the user knows it.
    markdown = "\n".join(line for line in (out / "report.md").read_text().splitlines()
                         if not line.startswith("!["))
    for path, name in names.items():
        markdown = markdown.replace(path, name)
    return (markdown, plots, report,
            [os.fspath(out / "report.json"), os.fspath(out / "report.md")])


# --------------------------------------------------------------------------- Live

def live_streamer(config: PageConfig, photo: str | None, model: str, head_scale: float,
                  lip_scale: float, no_crop: bool, names: dict[str, str]):
    """The Live tab's Streamer for the tab's choices, compiled: the one place a stream is built
    (a model or an option that builds another kind of Streamer goes here)."""
    if model not in config.models:
        raise PageError(f"Unknown model {model!r}: choose one of the list.")
    photo = _uploaded(photo, "photo", config, names)
    image = check_photo(photo)
    loaded = talking_head.load(config.models[model])
    options = talking_head.resolve(loaded, GenerationOptions(
        head_scale=float(head_scale), lip_scale=float(lip_scale), crop=not no_crop))
    return app_stream.build_streamer(loaded, image, options, photo)


def live_open(config: PageConfig, room: live.Room, photo: str | None, model: str,
              head_scale: float, lip_scale: float, no_crop: bool = False) -> str:
    """The Start button: a ticket for the page's WebSocket (``motion.app.live``), as JSON
    ``{"ticket": …}``, or ``{"error": one line}``."""
    names: dict[str, str] = {}
    try:
        missing = live.websocket_support()
        if missing:
            raise PageError(missing)
        room.check_space()
        ticket = room.issue(live_streamer(config, photo, model, head_scale, lip_scale, no_crop,
                                          names))
    except live.RoomFull as err:
        return json.dumps({"error": str(err)})
    except Exception as err:  # noqa: BLE001 - every failure becomes a message in the page
        return json.dumps({"error": readable(err, names)})
    return json.dumps({"ticket": ticket})


def _live_page_code() -> str:
    return (Path(__file__).with_name("live.js")).read_text(encoding="utf-8")


LIVE_PLAYER = """<div class="msync-live">
  <canvas width="256" height="256" style="width: 100%; max-width: 512px; aspect-ratio: 1;
          background: #222; display: block; margin: auto; border-radius: 6px"></canvas>
  <p class="live-line" id="live-line">Add a photo, then press Start and speak.</p>
</div>"""


# --------------------------------------------------------------------------- the page

def build_page(config: PageConfig):
    """The Gradio Blocks of the three tabs."""
    gr = optional_import("gradio", "msync ui", install=INSTALL)   # optional extra
    theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                              font_mono=["ui-monospace", "monospace"])   # no web fonts
    limit = f"{config.max_upload_bytes / 1e6:g} MB"
    with gr.Blocks(title="msync") as page:
        room = page.msync_live_room = live.Room()
        gr.Markdown("# msync — talking heads from one photo and speech")
        with gr.Tabs():
            with gr.Tab("Generate", id="generate"):
                with gr.Row():
                    with gr.Column():
                        photo = gr.Image(label="Photo (a face seen from the front)",
                                         sources=["upload", "webcam"], type="filepath",
                                         elem_id="gen-photo")
                        speech = gr.Audio(label="Speech", sources=["upload", "microphone"],
                                          type="filepath", format=None, elem_id="gen-speech")
                        model = gr.Dropdown(list(config.models), value=BUNDLED, label="Model",
                                            elem_id="gen-model")
                        head = gr.Slider(0.0, 2.0, value=1.0, step=0.05, label="Head motion",
                                         elem_id="gen-head")
                        lips = gr.Slider(0.0, 2.0, value=1.0, step=0.05, label="Lip motion",
                                         elem_id="gen-lips")
                        renderer = gr.Radio(list(RENDERERS), value=RENDERERS[0],
                                            label="Renderer", elem_id="gen-renderer")
                        no_crop = gr.Checkbox(False, label="No face detection: animate the "
                                                           "centre of the picture")
                        run = gr.Button("Generate", variant="primary", elem_id="gen-run")
                    with gr.Column():
                        status = gr.Markdown(f"Uploads up to {limit}.", elem_id="gen-status")
                        video = gr.Video(label="Talking head", elem_id="gen-video",
                                         interactive=False)
                        files = gr.File(label="Downloads: the mp4 and the keypoints",
                                        file_count="multiple", elem_id="gen-files",
                                        interactive=False)

                def on_generate(photo, speech, model, head, lips, renderer, no_crop,
                                progress=gr.Progress(track_tqdm=True)):  # noqa: B008 - Gradio's way
                    try:
                        mp4, downloads, message = generate_video(
                            config, photo, speech, model, head, lips, renderer, no_crop,
                            lambda f, d: progress(f, desc=d))
                    except PageError as err:
                        return None, None, f"**Error:** {err}"
                    return mp4, downloads, message

                run.click(on_generate, [photo, speech, model, head, lips, renderer, no_crop],
                          [video, files, status], api_visibility="private")

            with gr.Tab("Analyse", id="analyse"):
                with gr.Row():
                    with gr.Column():
                        videos = gr.File(label="Talking-head videos", file_count="multiple",
                                         elem_id="an-videos")
                        dataset = gr.Dropdown([""] + list(config.datasets), value="",
                                              label="…or a prepared dataset", elem_id="an-data")
                        scales = gr.Slider(1, 4, value=3, step=1,
                                           label="Scales (200, 400, 800, 1600 ms)")
                        points = gr.Textbox("17-47", label="Rigid points (17-47: landmarks; "
                                                           "0-4: keypoints)", elem_id="an-points")
                        analyse_run = gr.Button("Analyse", variant="primary", elem_id="an-run")
                    with gr.Column():
                        an_status = gr.Markdown("Mean |AV-Off| per scale: ground truth against "
                                                "random pairs (the paper's Table 2).",
                                                elem_id="an-status")
                        gallery = gr.Gallery(label="Plots", elem_id="an-plots", columns=2)
                        report = gr.JSON(label="report.json", elem_id="an-json")
                        an_files = gr.File(label="Downloads", file_count="multiple",
                                           interactive=False)

                def on_analyse(videos, dataset, scales, points,
                               progress=gr.Progress(track_tqdm=True)):  # noqa: B008 - Gradio's way
                    try:
                        return analyse(config, videos, dataset, scales, points,
                                       lambda f, d: progress(f, desc=d))
                    except PageError as err:
                        return f"**Error:** {err}", None, None, None

                analyse_run.click(on_analyse, [videos, dataset, scales, points],
                                  [an_status, gallery, report, an_files],
                                  api_visibility="private")

            with gr.Tab("Live", id="live"):
                with gr.Row():
                    with gr.Column():
                        live_photo = gr.Image(label="Photo", sources=["upload", "webcam"],
                                              type="filepath", elem_id="live-photo")
                        live_model = gr.Dropdown(list(config.models), value=BUNDLED,
                                                 label="Model", elem_id="live-model")
                        live_head = gr.Slider(0.0, 2.0, value=1.0, step=0.05,
                                              label="Head motion")
                        live_lips = gr.Slider(0.0, 2.0, value=1.0, step=0.05,
                                              label="Lip motion")
                        live_no_crop = gr.Checkbox(False, label="No face detection: animate "
                                                                "the centre of the picture")
                        with gr.Row():
                            live_start = gr.Button("Start", variant="primary",
                                                   elem_id="live-start")
                            live_stop = gr.Button("Stop", elem_id="live-stop")
                        gr.Markdown("The microphone streams to the server and the video "
                                    "follows the speech at 25 frames a second, the model's "
                                    "look-ahead behind it: 1.2 s for the bundled demo model, "
                                    "0.2 s for the bundled low-latency one (its faces "
                                    "distort more). The photo and the settings apply at "
                                    "Start.")
                    with gr.Column():
                        gr.HTML(LIVE_PLAYER, js_on_load=_live_page_code(),
                                elem_id="live-player")
                ticket = gr.Textbox(visible=False, elem_id="live-ticket")

                # The browser opens the microphone within the click (an audio context may only
                # start from one) while the server builds the Streamer; then the socket opens.
                live_start.click(
                    lambda *args: live_open(config, room, *args),
                    [live_photo, live_model, live_head, live_lips, live_no_crop], [ticket],
                    js="(...args) => { window.msyncLive.prepare(); return args; }",
                    concurrency_limit=live.MAX_SESSIONS, api_visibility="private",
                ).then(None, [ticket], None, js="(t) => { window.msyncLive.start(t); }")
                live_stop.click(None, None, None, js="() => { window.msyncLive.stop(); }")
    page.msync_theme = theme
    return page


# --------------------------------------------------------------------------- the command

def check_address(host: str, port: int) -> None:
    """Refuse a port out of range, or one already taken on ``host`` (one line, exit 2)."""
    if not 1 <= port <= 65535:
        raise InputError("--port", f"must be 1..65535; got {port}")
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe_socket:
            probe_socket.bind((host, port))
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            raise InputError("--port", f"{port} is already in use on {host}; choose another "
                                       "with --port") from None
        raise InputError("--host", f"cannot listen on {host}:{port} ({err.strerror or err})") \
            from None


def ui_command(args: Any) -> None:
    """``msync ui``: serve the page until Ctrl-C (module docstring)."""
    check_address(args.host, args.port)
    workdir = Path(tempfile.mkdtemp(prefix="msync-ui-"))
    try:
        config = page_config(args.models, args.datasets, args.max_upload_mb, workdir,
                             getattr(args, "analyze_config", None))
        # Before Gradio loads: uploads into the server's own folder, no analytics or update
        # checks (nothing outside this machine is asked for anything).
        os.environ["GRADIO_TEMP_DIR"] = os.fspath(workdir / "uploads")
        os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        page = build_page(config)
        page.queue(default_concurrency_limit=1)
        # SIGTERM (a service manager, a test) stops the server like Ctrl-C: the folder goes.
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        # The Live tab's WebSocket (motion.app.live) beside Gradio's own routes.
        app_kwargs = {"routes": [live.route(page.msync_live_room,
                                            lambda err: readable(err, {}))]}
        page.launch(server_name=args.host, server_port=args.port, prevent_thread_lock=True,
                    app_kwargs=app_kwargs,
                    quiet=True, show_error=False, max_file_size=config.max_upload_bytes,
                    ssr_mode=False, enable_monitoring=False, pwa=False, mcp_server=False,
                    allowed_paths=[os.fspath(workdir)], theme=page.msync_theme)
        print(f"msync ui: serving http://{args.host}:{args.port} (Ctrl-C stops it)",
              file=sys.stderr, flush=True)
        try:
            while True:
                time.sleep(3600)
        finally:
            page.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
