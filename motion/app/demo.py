"""``msync demo --out DIR``: the whole pipeline on the phantom corpus, end to end, on a CPU.

Stages (each the same code path as its own command, run in this process):

1. ``data synth``: a phantom corpus with known speech/motion coupling (docs/design.md, "Phantom
   corpus");
2. ``train syncers``: the small syncer pyramid (``configs/syncers-small.yaml``, paper eq. 1–2, 5);
3. ``train generator``: the small generator against those syncers (eq. 8–16);
4. ``evaluate``: multi-scale sync metrics of ground-truth, random and generated pairs;
5. ``analyze``: speech/head-motion correlation of the rigid points (the paper's Table 2);
6. ``generate``: the side-by-side pair — the first test clip's recorded keypoints drawn with
   ``generate --keypoints`` and a generation from the same clip's audio, both from the bundled
   face with the same renderer — then a video from the bundled speech (and from
   ``../shared/data/real`` media when it sits beside the clone);
7. ``DIR/index.html`` (:mod:`motion.app.demo_page`): one self-contained page (relative links
   only, no server): the pair, the other videos, each table with a verdict in words and units,
   captioned plots, a glossary and the exact commands run.

Each stage runs under its own progress bar, which in a log repeats its line whenever the
commands' own bars are quiet for 20 s (``syncers.run.progress``), so ``msync demo 2>&1 | cat``
shows a line at least every 20 s.

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
from motion.app import demo_page
from motion.app.cli import build_parser
from motion.app.demo_page import GENERATED_VIDEO, TRUTH_VIDEO
from motion.talking_head import MAX_DRIFT_WINDOW_S
from syncers.data.dataset import split_for
from syncers.data.phantom.corpus import MAX_CLIPS, MAX_SECONDS, MIN_SECONDS, clip_id
from syncers.run import config as config_lib
from syncers.run import progress

DEFAULT_CONFIG = configs.path("demo.yaml")
# In the folder ``real_media`` names: a portrait and a recording of speech, also animated.
REAL_PORTRAIT, REAL_SPEECH = "happy.png", "RD_Radio31_000.wav"


# The videos beside the side-by-side pair, with their captions on the page.
VIDEOS = (("phantom.mp4", "Generated from the bundled six seconds of real speech (the model "
                          "has heard only phantom speech)"),
          ("real.mp4", "Generated from a real photograph and real speech "
                       "(../shared/data/real)"))

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
    real_media: str | None = None          # a folder with REAL_PORTRAIT and REAL_SPEECH to animate
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


def comparison_clip(corpus: CorpusConfig) -> str:
    """The id of the first test clip of the corpus ``msync data synth`` writes for ``corpus``
    (its splits are a function of the clip count), the clip of the side-by-side pair."""
    first = next(i for i in range(corpus.clips) if split_for(i, corpus.clips) == "test")
    return clip_id(first)


def stages(config: DemoConfig, out: Path) -> list[tuple[str, list[list[str]]]]:
    """``[(stage name, [msync argv, ...])]`` for the whole demo."""
    data, syncers, generator = out / "phantom", out / "syncers", out / "generator"
    sets = lambda stage: [a for o in stage.overrides for a in ("--set", o)]
    corpus = config.corpus
    drift = ["--drift-window", str(config.drift_window_s)] if config.drift_window_s else []
    # The side-by-side pair: a test clip's recorded motion and a generation from its audio,
    # drawn by the same renderer from the same (bundled) face, so only the motion differs.
    clip = comparison_clip(config.corpus)
    clip_npz = data / "test" / f"{clip}.npz"
    videos = [["generate", "--model", str(generator), "--keypoints", str(clip_npz), "--audio",
               str(clip_npz.with_suffix(".wav")), "--out", str(out / TRUTH_VIDEO)],
              ["generate", "--model", str(generator), "--audio",
               str(clip_npz.with_suffix(".wav")), "--out", str(out / GENERATED_VIDEO), *drift],
              ["generate", "--model", str(generator), "--out", str(out / "phantom.mp4"),
               "--keypoints-out", str(out / "phantom_keypoints.npz"), *drift]]
    real = Path(config.real_media) if config.real_media else None
    if real is not None and (real / REAL_PORTRAIT).is_file() and (real / REAL_SPEECH).is_file():
        videos.append(["generate", "--model", str(generator), "--image",
                       str(real / REAL_PORTRAIT), "--audio", str(real / REAL_SPEECH), "--out",
                       str(out / "real.mp4"), *drift])
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
        # The stage's own bar: in a log it writes a line whenever the commands' bars are quiet
        # for 20 s (loading, compiling, scoring), so a piped demo is never silent for long.
        with progress.bar(len(commands), f"demo: {name}", "command") as bar:
            for argv in commands:
                _run(argv)
                bar.update(1)
        timings[name] = round(time.perf_counter() - start, 1)
        (out / "timings.json").write_text(json.dumps(timings, indent=1) + "\n")
    page = write_index(out, timings, config)
    timings["total"] = round(sum(timings.values()), 1)
    (out / "timings.json").write_text(json.dumps(timings, indent=1) + "\n")
    print(f"msync demo: done in {timings['total']:.0f} s -> {page}")
    return timings


def write_index(out: Path, timings: dict[str, float], config: DemoConfig | None = None) -> Path:
    """``out/index.html`` (:mod:`motion.app.demo_page`): the pair, videos, tables with verdicts,
    plots, glossary and the commands of ``config``'s plan (default: ``out/config.yaml``, which
    :func:`demo` writes, so the page can be rebuilt on a finished directory)."""
    if config is None and (out / "config.yaml").is_file():
        config = config_lib.load(DemoConfig, out / "config.yaml")
    plan = stages(config, out) if config is not None else None
    clip = comparison_clip(config.corpus) if config is not None else None
    return demo_page.write_page(out, timings, plan, clip, VIDEOS, markdown=_markdown)


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
