"""``msync demo --out DIR``: the whole pipeline on the phantom corpus, end to end, on a CPU.

Stages (each the same code path as its own command, run in this process):

1. ``data synth``: a phantom corpus with known speech/motion coupling (docs/design.md, "Phantom
   corpus");
2. ``train syncers``: the small syncer pyramid (``configs/syncers-small.yaml``, paper eq. 1–2, 5);
3. ``train generator``: the small generator against those syncers (eq. 8–16);
4. ``evaluate``: multi-scale sync metrics of ground-truth, random and generated pairs;
5. ``analyze``: speech/head-motion correlation of the rigid points (the paper's Table 2);
6. ``generate``: a video from the bundled face and a phantom utterance (and from
   ``../shared/data/real`` media when it sits beside the clone);
7. ``DIR/index.html``: one self-contained page (relative links only, no server) with the
   videos, the metrics tables and the plots.

Sizes come from ``configs/demo.yaml``; every stage's run directory sits under ``DIR`` and each
trainer resumes, so rerunning a killed demo continues where it stopped. ``DIR/timings.json``
holds each stage's wall time.
"""
from __future__ import annotations

import dataclasses
import html
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Sequence

import configs
from motion.app.cli import build_parser
from motion.app.generate import MAX_DRIFT_WINDOW_S
from render.video import read_video
from syncers.data.phantom.corpus import MAX_CLIPS, MAX_SECONDS, MIN_SECONDS
from syncers.run import config as config_lib
from syncers.run.errors import InputError

DEFAULT_CONFIG = configs.path("demo.yaml")
# Real media beside a source checkout (not installed): used when present, skipped otherwise.
REAL_MEDIA = Path(__file__).resolve().parents[3] / "shared" / "data" / "real"


# The demo's corpus: at least 20 clips, so that the 80/10/10 split leaves every split two or
# more (evaluate needs 2); otherwise msync data synth's own bounds.
MIN_CLIPS = 20


@dataclasses.dataclass(frozen=True)
class CorpusConfig:
    clips: int = config_lib.ranged(200, ge=MIN_CLIPS, le=MAX_CLIPS)
    seconds: float = config_lib.ranged(8.0, ge=MIN_SECONDS, le=MAX_SECONDS)
    seed: int = config_lib.non_negative(0)


@dataclasses.dataclass(frozen=True)
class StageConfig:
    config: str = ""                       # YAML under configs/ (relative) or a path
    overrides: tuple[str, ...] = ()        # --set values


@dataclasses.dataclass(frozen=True)
class AnalyzeConfig:
    points: str = "0-4"
    scales: int = config_lib.ranged(3, ge=1, le=4)
    overrides: tuple[str, ...] = ()        # --set values for configs/analyze.yaml


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    corpus: CorpusConfig = dataclasses.field(default_factory=CorpusConfig)
    syncers: StageConfig = StageConfig("syncers-small.yaml")
    generator: StageConfig = StageConfig("generator-small.yaml")
    analyze: AnalyzeConfig = dataclasses.field(default_factory=AnalyzeConfig)
    real_media: bool = True                # also generate from ../shared/data/real when present
    # msync generate --drift-window for the videos (0 = none, passed only when set): the
    # generator's leak to its anchor pose keeps even the short demo training in place
    drift_window_s: float = config_lib.ranged(0.0, ge=0, le=MAX_DRIFT_WINDOW_S)


def _config_path(name: str) -> str:
    path = Path(name)
    return str(path if path.is_absolute() or path.exists() else configs.path(name))


def _run(argv: Sequence[str]) -> None:
    """Run one ``msync`` command in this process; its errors propagate to the demo's caller."""
    args = build_parser().parse_args(list(argv))
    args.handler(args)


def stages(config: DemoConfig, out: Path) -> list[tuple[str, list[list[str]]]]:
    """``[(stage name, [msync argv, ...])]`` for the whole demo."""
    data, syncers, generator = out / "phantom", out / "syncers", out / "generator"
    sets = lambda stage: [a for o in stage.overrides for a in ("--set", o)]  # noqa: E731
    corpus = config.corpus
    drift = ["--drift-window", str(config.drift_window_s)] if config.drift_window_s else []
    videos = [["generate", "--model", str(generator), "--out", str(out / "phantom.mp4"),
               "--keypoints-out", str(out / "phantom_keypoints.npz"), *drift]]
    if config.real_media and (REAL_MEDIA / "happy.png").is_file():
        videos.append(["generate", "--model", str(generator), "--image",
                       str(REAL_MEDIA / "happy.png"), "--audio",
                       str(REAL_MEDIA / "RD_Radio31_000.wav"), "--out", str(out / "real.mp4"),
                       *drift])
    return [
        ("synthesise corpus", [["data", "synth", "--out", str(data), "--clips", str(corpus.clips),
                                "--seconds", str(corpus.seconds), "--seed", str(corpus.seed)]]),
        ("train syncers", [["train", "syncers", "--data", str(data), "--out", str(syncers),
                            "--config", _config_path(config.syncers.config),
                            *sets(config.syncers)]]),
        ("train generator", [["train", "generator", "--data", str(data), "--syncers",
                              str(syncers), "--out", str(generator), "--config",
                              _config_path(config.generator.config), *sets(config.generator)]]),
        ("evaluate", [["evaluate", "--data", str(data), "--syncers", str(syncers), "--model",
                       str(generator), "--out", str(out / "evaluation")]]),
        ("analyze", [["analyze", "--data", str(data), "--out", str(out / "analysis"),
                      "--points", config.analyze.points, "--scales", str(config.analyze.scales),
                      *sets(config.analyze)]]),
        ("generate videos", videos),
    ]


def demo(config: DemoConfig, out: str | os.PathLike) -> dict[str, float]:
    """Run every stage, write ``index.html`` and ``timings.json``; returns stage → seconds."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config_lib.dump(config, out / "config.yaml")
    timings: dict[str, float] = {}
    for name, commands in stages(config, out):
        print(f"msync demo: {name} ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        for argv in commands:
            _run(argv)
        timings[name] = round(time.perf_counter() - start, 1)
        (out / "timings.json").write_text(json.dumps(timings, indent=1) + "\n")
    page = write_index(out, timings)
    timings["total"] = round(sum(timings.values()), 1)
    (out / "timings.json").write_text(json.dumps(timings, indent=1) + "\n")
    print(f"msync demo: done in {timings['total']:.0f} s -> {page}")
    return timings


def write_index(out: Path, timings: dict[str, float]) -> Path:
    """``out/index.html``: videos, metrics and analysis tables, plots; relative links only."""
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>msync demo</title>",
             "<style>body{font-family:sans-serif;max-width:70em;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #aaa;"
             "padding:.2em .6em;text-align:right}img{max-width:32em;margin:.5em}"
             "video{max-width:32em;margin:.5em}</style></head><body>",
             "<h1>msync demo</h1>",
             "<p>A phantom corpus with known speech/motion coupling, the small syncer pyramid "
             "and generator trained on it, their multi-scale sync metrics, the speech/head-motion "
             "analysis, and talking-head videos generated by the trained model.</p>"]
    videos = [p for p in ("phantom.mp4", "real.mp4") if (out / p).is_file()]
    if videos:
        parts.append("<h2>Generated videos</h2>")
        for name in videos:
            poster = _poster(out / name)
            parts.append(f"<figure><video id='{name.split('.')[0]}' src='{name}' controls "
                         f"preload='metadata' width='256' height='256'"
                         + (f" poster='{poster.name}'" if poster else "") +
                         f"></video><figcaption>{name}</figcaption></figure>")
    metrics = out / "evaluation" / "metrics.md"
    if metrics.is_file():
        parts += ["<h2>Multi-scale sync metrics (test split)</h2>", _markdown(metrics.read_text())]
    report = out / "analysis" / "report.md"
    if report.is_file():
        parts += ["<h2>Speech/head-motion analysis</h2>", _markdown(report.read_text())]
    plots = sorted((out / "analysis").glob("*.png")) if (out / "analysis").is_dir() else []
    if plots:
        parts.append("<h2>Plots</h2>")
        parts += [f"<img class='plot' src='analysis/{p.name}' alt='{p.stem}'>" for p in plots]
    parts.append("<h2>Stage wall times</h2><table><tr><th>stage</th><th>seconds</th></tr>")
    parts += [f"<tr><td style='text-align:left'>{html.escape(k)}</td><td>{v:.1f}</td></tr>"
              for k, v in timings.items()]
    parts.append("</table></body></html>")
    page = out / "index.html"
    page.write_text("\n".join(parts) + "\n")
    return page


def _poster(video: Path) -> Path | None:
    """A PNG of the video's frame at 1 s beside it (the page shows a frame before it plays), or
    None when the video cannot be read."""
    import imageio.v3 as iio

    poster = video.with_name(video.stem + "_poster.png")
    try:
        frames = read_video(video)
        iio.imwrite(poster, frames[min(25, len(frames) - 1)])
    except (InputError, InputError, OSError, ValueError, IndexError):
        return None
    return poster


def _markdown(text: str) -> str:
    """The small Markdown subset our reports use (headings, paragraphs, pipe tables) as HTML;
    image lines are left out (the page shows every plot in its own section)."""
    out: list[str] = []
    table: list[list[str]] = []

    def flush():
        if table:
            head, *rows = table
            out.append("<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in head)
                       + "</tr>" + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>"
                                                            for c in row) + "</tr>"
                                           for row in rows) + "</table>")
            table.clear()

    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("|"):
            cells = [c.strip().replace("\\|", "|")
                     for c in re.split(r"(?<!\\)\|", stripped.strip("|"))]
            if not all(set(c) <= set("-: ") for c in cells):
                table.append(cells)
            continue
        flush()
        if stripped.startswith("#"):
            level = min(len(stripped) - len(stripped.lstrip("#")) + 2, 6)
            out.append(f"<h{level}>{html.escape(stripped.lstrip('#').strip())}</h{level}>")
        elif stripped and not re.fullmatch(r"!\[[^\]]*\]\([^)]*\)", stripped):
            out.append(f"<p>{html.escape(stripped)}</p>")
    flush()
    return "\n".join(out)


def demo_command(args) -> None:
    """``msync demo --out DIR [--config YAML] [--set k=v]``."""
    path = getattr(args, "config", None) or DEFAULT_CONFIG
    # Every key's range is checked here, before anything is written (DemoConfig's fields).
    config = config_lib.load(DemoConfig, path, list(getattr(args, "overrides", None) or []))
    demo(config, args.out)
