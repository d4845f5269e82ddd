"""The results page of ``msync demo`` (``DIR/index.html``): what a reader needs to judge the run
without knowing the code.

Built from the stages' JSON (``evaluation/metrics.json``, ``analysis/report.json``), not their
Markdown, so that every number can be put in words and units:

- each table has a one-line verdict computed from its numbers (:func:`sync_verdict`,
  :func:`drift_verdict`, :func:`analysis_verdict`);
- every column names its unit, and a glossary defines each metric the page shows
  (:data:`GLOSSARY`, as computed in ``syncers/metrics.py``, ``motion/evaluate.py`` and
  ``motion/app/analyze.py``);
- the side-by-side pair (a test clip's recorded motion, a generation from the same clip's
  audio), the other videos, each plot with a heading and a caption;
- "Reproduce": the exact ``msync`` commands the demo ran (``shlex.join`` of its plan).

Where a stage left only Markdown (a directory from an older msync), that Markdown is shown as is.
"""
from __future__ import annotations

import html
import json
import re
import shlex
from pathlib import Path
from typing import Iterable, Sequence

from motion.long_horizon import width_percent
from syncers.data.layout import FPS
from syncers.data.video import read_video
from syncers.models import MOTION_FRAMES
from syncers.run.errors import InputError

FRAME_MS = 1000 / FPS              # one video frame (level 1): 40 ms
# "In sync": the generated motion's mean |AV-Off| is at most IN_SYNC_FRAMES frames of its
# level, or at most CLEARLY_BELOW_RANDOM times the random pairs' (random offsets spread over
# ±15 frames, about 7.5 on average, so half of that is far from chance).
IN_SYNC_FRAMES = 2.0
CLEARLY_BELOW_RANDOM = 0.5
# The side-by-side pair: a test clip's recorded motion, a generation from the same clip's audio.
TRUTH_VIDEO, GENERATED_VIDEO = "clip_truth.mp4", "clip_generated.mp4"
SIGNIFICANT_P = 0.05               # the analysis's permutation p below which a scale counts

# Every metric the page can show: term -> what it is and how it is computed.
GLOSSARY = {
    "AV-Off": "the audio/video offset, in frames of the level (a level-ℓ frame lasts "
              "40·2^(ℓ−1) ms: 40 ms at level 1, 320 ms at level 4), at which the syncer scores "
              "motion and audio as best matched; offsets −15…15 are tried and 0 means in "
              "sync. Tables show the mean of |AV-Off| over clips (and its standard deviation); "
              "random pairs land 7–8 frames away on average.",
    "AV-Conf": "how sharply the syncer prefers that offset: the median over offsets of the "
               "mean embedding distance minus its minimum (SyncNet's confidence; distance = "
               "−score, for a cosine syncer 1 − cosine up to a constant). Unitless; higher is "
               "more confident.",
    "AVS_u": "the mean cosine similarity of the audio and motion embeddings at offset 0 "
             "(−1…1; 1 = the syncer finds them perfectly matched).",
    "AVS_m": "the mean cosine similarity of the joint audio-motion embeddings of generated and "
             "ground-truth motion, each with the clip's audio (−1…1).",
    "AVS_v": "the mean cosine similarity of the motion embeddings of generated and "
             "ground-truth motion (−1…1).",
    "L_rec": "eq. 14: the mean squared difference of generated and ground-truth keypoints "
             "(all six values: position x, y and the 2×2 jacobian) over frames, keypoints and "
             "clips, in squared keypoint units (positions span −1…1 across the frame).",
    "speed": "the mean distance a keypoint moves from one frame to the next (1/25 s), as % of "
             "the frame width (keypoints span −1…1, so a distance d is 50·d % of the width).",
    "acceleration": "the mean size of a keypoint's second difference p(t+2) − 2p(t+1) + p(t), "
                    "as % of the frame width per frame².",
    "mouth sync": "Pearson r between the mouth opening and the mel loudness (the loudness of "
                  "the audio features) at the best lag of 0–3 frames, averaged over clips "
                  "(−1…1; 1 = the mouth opens exactly with the loudness).",
    "drift": "how far the rigid keypoints 0–4 (brows, eyes, nose) are from where they started: "
             "the mean distance ‖p(t) − p(0)‖, as % of the frame width, in a long generation "
             "driven by test clips' audio one after the other; the ground truth's figure is its "
             "distance at the end of its (shorter) clip.",
    "p": "the permutation p-value that the ground-truth pairs' mean |AV-Off| is smaller "
         "than that of the same clips with their audio re-paired at random (small = speech "
         "and head motion are in sync more often than chance; below 0.05 counts as "
         "significant here).",
}


def frame_ms(level: int) -> float:
    """Duration of one frame of pyramid ``level`` (1 = 25 fps), ms."""
    return FRAME_MS * 2 ** (level - 1)


def segment_ms(level: int) -> float:
    """The window a level's syncer reads: ``MOTION_FRAMES`` (5) frames of that level, ms —
    200, 400, 800 and 1600 ms at levels 1–4 (docs/design.md, "Temporal pyramid")."""
    return MOTION_FRAMES * frame_ms(level)


def _duration(ms: float) -> str:
    return f"{ms / 1000:g} s" if ms >= 1000 else f"{ms:.0f} ms"


def _span(values: Sequence[float], fmt: str = "{:.1f}") -> str:
    lo, hi = fmt.format(min(values)), fmt.format(max(values))
    return lo if lo == hi else f"{lo}–{hi}"


def _windows(levels: Sequence[int]) -> str:
    """``200–800 ms (levels 1–3)`` or ``1.6 s (level 4)``: the windows of consecutive levels."""
    if len(levels) == 1:
        return f"{_duration(segment_ms(levels[0]))} (level {levels[0]})"
    lo, hi = segment_ms(levels[0]), segment_ms(levels[-1])
    if hi < 1000:
        span = f"{lo:.0f}–{hi:.0f} ms"
    elif lo >= 1000:
        span = f"{lo / 1000:g}–{hi / 1000:g} s"
    else:
        span = f"{_duration(lo)}–{_duration(hi)}"
    names = f"levels {levels[0]}–{levels[-1]}" if levels == list(
        range(levels[0], levels[-1] + 1)) else "levels " + ", ".join(map(str, levels))
    return f"{span} ({names})"


def level_status(generated: float, random: float) -> str:
    """``in sync``, ``nearer than random`` or ``no better than random`` for mean |AV-Off|s."""
    if generated >= random:
        return "no better than random"
    if generated <= IN_SYNC_FRAMES or generated <= CLEARLY_BELOW_RANDOM * random:
        return "in sync"
    return "nearer than random"


def sync_verdict(levels: dict, who: str = "generated") -> str:
    """One sentence on ``metrics.json``'s ``levels`` (``{"1": {"gt"|"random"|"generated":
    {"av_off_mean", ...}}}``): at which windows ``who``'s motion is in sync, and every level
    where it is no better than random pairs, with the numbers."""
    groups: list[tuple[str, list[int]]] = []
    for key in sorted(levels, key=int):
        status = level_status(levels[key][who]["av_off_mean"], levels[key]["random"]["av_off_mean"])
        if groups and groups[-1][0] == status and groups[-1][1][-1] == int(key) - 1:
            groups[-1][1].append(int(key))
        else:
            groups.append((status, [int(key)]))
    subject = "Generated motion" if who == "generated" else "Ground-truth motion"
    clauses = []
    for status, group in groups:
        own = [levels[str(i)][who]["av_off_mean"] for i in group]
        rand = [levels[str(i)]["random"]["av_off_mean"] for i in group]
        if status == "in sync":
            clauses.append(f"in sync at {_windows(group)}: mean |AV-Off| {_span(own)} frames, "
                           f"random pairs {_span(rand)}")
        elif len(group) == 1:
            clauses.append(f"{status} at {_windows(group)} ({own[0]:.2f} vs random "
                           f"{rand[0]:.2f} frames)")
        else:
            clauses.append(f"{status} at {_windows(group)} ({_span(own, '{:.2f}')} vs random "
                           f"{_span(rand, '{:.2f}')} frames)")
    first, *rest = clauses
    sentence = f"{subject} is {first}"
    if rest:
        sentence += "; " + "; ".join(f"it is {c}" for c in rest)
    return sentence + "."


def drift_verdict(drift: dict) -> str:
    """One sentence on ``metrics.json``'s ``drift`` in % of the frame width."""
    after = {int(k[len("after_"):-1]): v for k, v in drift.items()
             if k.startswith("after_") and k.endswith("s")}
    if not drift.get("finite", True) or any(v is None for v in after.values()):
        return ("The long generation went non-finite (NaN or infinite keypoints): the model "
                "diverges.")
    longest = max(after)
    rest = [f"after {s} s {width_percent(v):.1f} %" for s, v in sorted(after.items())
            if s != longest]
    sentence = (f"After {longest} s the head is {width_percent(after[longest]):.1f} % of the "
                f"frame width from where it started" + (f" ({', '.join(rest)})" if rest else ""))
    gt = drift.get("gt_end_of_clip")
    if gt is not None:
        sentence += (f"; the ground truth moves {width_percent(gt):.1f} % over its "
                     f"{drift.get('gt_clip_seconds', 0):g} s clip")
    return sentence + "."


def mouth_verdict(sync: dict) -> str:
    """One sentence on ``metrics.json``'s ``mouth_sync``: does the generated mouth open with the
    loudness as much as the recorded one does (within 0.1 of its r, or above it)?"""
    gen, gt = sync["generated"], sync["gt"]
    if gen < 0.1:
        return (f"The generated mouth does not follow the loudness of the speech (r = {gen:.2f}; "
                f"the recorded mouths {gt:.2f}).")
    if gen >= gt - 0.1:
        return (f"The generated mouth opens with the loudness of the speech as the recorded "
                f"mouths do (r = {gen:.2f} against {gt:.2f}).")
    return (f"The generated mouth follows the loudness of the speech, more weakly than the "
            f"recorded mouths (r = {gen:.2f} against {gt:.2f}).")


def analysis_verdict(scales: dict) -> str:
    """One sentence on ``analysis/report.json``'s ``scales``: where recorded head motion
    follows the speech significantly (permutation p < ``SIGNIFICANT_P``)."""
    found, not_found = [], []
    for key in sorted(scales, key=int):
        p = scales[key]["p_gt_vs_random"]
        (found if p < SIGNIFICANT_P else not_found).append(
            f"{_duration(segment_ms(int(key)))} (p = {p:.2g})")
    if not found:
        return ("No scale shows a significant speech/head-motion correlation: at "
                f"{', '.join(not_found)} ground-truth offsets are not smaller than random ones.")
    sentence = ("Head motion follows the speech significantly at " + ", ".join(found) +
                " (ground-truth |AV-Off| smaller than random)")
    if not_found:
        sentence += "; not at " + ", ".join(not_found)
    return sentence + "."


# --------------------------------------------------------------------------- HTML

STYLE = ("body{font-family:sans-serif;max-width:62em;margin:2em auto;padding:0 1em;"
         "line-height:1.4;color:#222}"
         "table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #bbb;"
         "padding:.25em .6em;text-align:right}th{background:#f2f2f2}"
         "td.l,th.l{text-align:left;white-space:nowrap}"
         "p.verdict{font-weight:bold;background:#eef5ee;border-left:4px solid #5a5;"
         "padding:.4em .7em}"
         ".pair{display:flex;gap:1.5em;flex-wrap:wrap}figure{margin:.5em 0}"
         "figcaption{max-width:32em;font-size:.95em}video{display:block;background:#000}"
         "img.plot{max-width:100%;border:1px solid #ddd}"
         "pre{background:#f6f6f6;padding:.6em;overflow-x:auto;white-space:pre-wrap;"
         "word-break:break-all;font-size:.85em}dt{font-weight:bold;margin-top:.4em}")


def _table(head: Sequence[str], rows: Iterable[Sequence[str]], left: int = 1) -> str:
    """An HTML table; the first ``left`` columns are labels (left-aligned)."""
    cls = lambda i: " class='l'" if i < left else ""
    out = ["<table><tr>" + "".join(f"<th{cls(i)}>{html.escape(h)}</th>"
                                   for i, h in enumerate(head)) + "</tr>"]
    out += ["<tr>" + "".join(f"<td{cls(i)}>{html.escape(c)}</td>" for i, c in enumerate(row))
            + "</tr>" for row in rows]
    return "".join(out) + "</table>"


def _verdict(text: str) -> str:
    return f"<p class='verdict'>{html.escape(text)}</p>"


_PAIRS = {"gt": "ground truth", "random": "random", "generated": "generated"}


def sync_section(metrics: dict) -> tuple[str, set[str]]:
    """The evaluation's tables with verdicts and units; also the glossary terms they show."""
    levels = metrics["levels"]
    who = "generated" if all("generated" in e for e in levels.values()) else "gt"
    parts = [f"<p>{metrics.get('n_clips', '?')} test clips, each cut to "
             f"{metrics.get('clip_frames', '?')} frames "
             f"({metrics.get('clip_frames', 0) / FPS:g} s). Pairs: ground truth (a clip's motion "
             "with its own audio), random (clip c's motion with clip c+1's audio) and generated "
             "(motion the generator made from the clip's first frame and audio).</p>",
             _verdict(sync_verdict(levels, who))]
    rows = []
    for key in sorted(levels, key=int):
        level = int(key)
        for kind, m in levels[key].items():
            rows.append([key, f"{segment_ms(level):.0f}", _PAIRS.get(kind, kind),
                         f"{m['av_off_mean']:.2f} ± {m['av_off_std']:.2f}",
                         f"{m['av_off_mean'] * frame_ms(level):.0f}",
                         f"{m['av_conf_mean']:.3f}", f"{m['avs_u_mean']:.3f}"])
    parts.append(_table(["level", "window (ms)", "pairs", "mean |AV-Off| ± std (frames of the "
                         "level)", "mean |AV-Off| (ms)", "AV-Conf (distance, unitless)",
                         "AVS_u (cosine)"], rows, left=3))
    terms = {"AV-Off", "AV-Conf", "AVS_u"}
    if who == "generated" and all("avs_m_mean" in e["generated"] for e in levels.values()):
        parts += ["<h3>Generated vs ground-truth motion</h3>",
                  _table(["level", "window (ms)", "AVS_m (cosine)", "AVS_v (cosine)"],
                         [[k, f"{segment_ms(int(k)):.0f}",
                           f"{levels[k]['generated']['avs_m_mean']:.3f}",
                           f"{levels[k]['generated']['avs_v_mean']:.3f}"]
                          for k in sorted(levels, key=int)])]
        terms |= {"AVS_m", "AVS_v"}
    stats = metrics.get("generated_stats")
    if stats:
        gen, gt = stats["generated"], stats["gt"]
        speed = gen["velocity_pos"] / gt["velocity_pos"] if gt["velocity_pos"] else float("nan")
        parts += ["<h3>How the generated motion moves</h3>",
                  _verdict(f"Generated keypoints move {speed:.2f}× as fast as the recorded "
                           f"ones (L_rec {stats['l_rec']:.4f} squared keypoint units)."),
                  _table(["statistic", "generated", "ground truth"],
                         [["L_rec (squared keypoint units)", f"{stats['l_rec']:.5f}", "0"],
                          ["speed (% of frame width per frame)",
                           f"{width_percent(gen['velocity_pos']):.3f}",
                           f"{width_percent(gt['velocity_pos']):.3f}"],
                          ["acceleration (% of frame width per frame²)",
                           f"{width_percent(gen['acceleration_pos']):.3f}",
                           f"{width_percent(gt['acceleration_pos']):.3f}"]])]
        terms |= {"L_rec", "speed", "acceleration"}
        sync = metrics.get("mouth_sync")
        if sync and sync.get("generated") is not None and sync.get("gt") is not None:
            parts.append(_verdict(mouth_verdict(sync)))
            parts.append(_table(["mouth sync (Pearson r)", "generated", "ground truth"],
                                [["mouth opening vs mel loudness", f"{sync['generated']:.2f}",
                                  f"{sync['gt']:.2f}"]]))
            terms.add("mouth sync")
    drift = metrics.get("drift")
    if drift:
        after = sorted((int(k[len("after_"):-1]), v) for k, v in drift.items()
                       if k.startswith("after_") and k.endswith("s"))
        parts += ["<h3>Drift in a long generation</h3>", _verdict(drift_verdict(drift)),
                  _table(["after", "distance from the start (% of frame width)"],
                         [[f"{s} s (generated)", "–" if v is None else
                           f"{width_percent(v):.1f}"] for s, v in after] +
                         [[f"{drift['gt_clip_seconds']:g} s (ground truth)",
                           f"{width_percent(drift['gt_end_of_clip']):.1f}"]])]
        terms.add("drift")
    return "\n".join(parts), terms


def analysis_section(report: dict) -> tuple[str, set[str]]:
    """``analysis/report.json`` as a verdict and a table with units."""
    scales = report["scales"]
    has_generated = all("generated" in e for e in scales.values())
    head = ["scale", "window (ms)", "ground truth |AV-Off| (frames)", "random |AV-Off| (frames)"]
    head += ["generated |AV-Off| (frames)"] if has_generated else []
    head += ["p (ground truth vs random)"]
    rows = []
    for key in sorted(scales, key=int):
        e = scales[key]
        row = [f"{key} (frame = {frame_ms(int(key)):.0f} ms)", f"{segment_ms(int(key)):.0f}"]
        row += [f"{e[k]['av_off_mean']:.2f} ± {e[k]['av_off_std']:.2f}"
                for k in ("gt", "random") + (("generated",) if has_generated else ())]
        rows.append(row + [f"{e['p_gt_vs_random']:.2g}"])
    points = report.get("points", [])
    text = (f"<p>Does recorded head motion follow the speech, and at which time scale? The "
            f"positions of points {', '.join(map(str, points))} (brows, eyes and nose: the rigid "
            f"head) of {report.get('n_clips', '?')} held-out clips, scored by one syncer per "
            "scale trained on them (the paper's Table 2 protocol).</p>")
    return "\n".join([text, _verdict(analysis_verdict(scales)), _table(head, rows)]), \
        {"AV-Off", "p"}


def glossary_section(terms: set[str]) -> str:
    """A definition list of the glossary entries for ``terms`` (in :data:`GLOSSARY`'s order)."""
    return "<dl>" + "".join(f"<dt>{html.escape(t)}</dt><dd>{html.escape(d)}</dd>"
                            for t, d in GLOSSARY.items() if t in terms) + "</dl>"


def plot_caption(path: Path) -> tuple[str, str]:
    """``(heading, one-sentence caption)`` for a plot the stages write."""
    name = path.name
    scale = re.fullmatch(r"offsets_scale(\d+)\.png", name)
    if scale:
        s = int(scale.group(1))
        return (f"Offsets found at scale {s} ({segment_ms(s):.0f} ms windows)",
                f"How many clips (vertical) the syncer placed at each audio offset (horizontal, "
                f"in frames of {frame_ms(s):.0f} ms): in-sync motion piles up at 0, random "
                f"pairs spread over ±15.")
    if name == "lag_curve.png":
        return ("Match of motion and audio at every offset",
                "The mean embedding distance (lower = better matched) between head motion and "
                "audio shifted by the offset in ms, one panel per scale: a dip at 0 for the "
                "ground truth (solid) that the random pairs (dashed) lack means head motion "
                "follows the speech.")
    if name == "long_horizon.png":
        return ("A long generation against its recording",
                "The rigid keypoints' positions over the long generation (generated) and the "
                "recording it started from (ground truth): curves that stay together and within "
                "the recording's range mean the motion neither drifts nor freezes.")
    return (path.stem.replace("_", " "), "A plot the stage wrote (no description known).")


def _poster(video: Path) -> Path | None:
    """A PNG of the video's frame at 1 s beside it (the page shows a frame before it plays), or
    None when the video cannot be read."""
    import imageio.v3 as iio

    poster = video.with_name(video.stem + "_poster.png")
    try:
        frames = read_video(video)
        iio.imwrite(poster, frames[min(FPS, len(frames) - 1)])
    except (InputError, OSError, ValueError, IndexError):
        return None
    return poster


def _video(out: Path, name: str, caption: str) -> str:
    poster = _poster(out / name)
    return (f"<figure><video id='{name.split('.')[0]}' src='{name}' controls "
            f"preload='metadata' width='256' height='256'"
            + (f" poster='{poster.name}'" if poster else "") +
            f"></video><figcaption>{caption}</figcaption></figure>")


def reproduce_section(plan: Sequence[tuple[str, Sequence[Sequence[str]]]]) -> str:
    """The demo's commands, one shell line each (``shlex.join``), grouped by stage."""
    lines = []
    for name, commands in plan:
        lines.append(f"# {name}")
        lines += [shlex.join(["msync", *argv]) for argv in commands]
    return ("<p>The demo ran these commands, in this order, in one process (each the same code "
            "path as its own command; every flag is shown):</p><pre id='reproduce'>"
            + html.escape("\n".join(lines)) + "</pre>")


def reproduce_commands(page: str) -> list[list[str]]:
    """The commands of a page's Reproduce section, split back into argv lists (tests, tools)."""
    block = re.search(r"<pre id='reproduce'>(.*?)</pre>", page, re.DOTALL)
    if block is None:
        return []
    return [shlex.split(line)[1:] for line in html.unescape(block.group(1)).splitlines()
            if line and not line.startswith("#")]


def write_page(out: Path, timings: dict[str, float],
               plan: Sequence[tuple[str, Sequence[Sequence[str]]]] | None = None,
               clip: str | None = None, videos: Sequence[tuple[str, str]] = (),
               markdown=None) -> Path:
    """``out/index.html``; relative links only. ``videos``: ``(file, caption)`` beyond the pair
    (``clip_truth.mp4`` / ``clip_generated.mp4`` of test clip ``clip``); ``markdown``: the
    Markdown-to-HTML function for stages that left only Markdown."""
    glossary: set[str] = set()
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>msync demo</title>",
             f"<style>{STYLE}</style></head><body>", "<h1>msync demo</h1>",
             "<p>A phantom corpus (synthetic talking heads whose head motion and lips follow "
             "their synthetic speech by construction), the small syncer pyramid and generator "
             "trained on it, how well the generated motion keeps time with the speech at four "
             "time scales, how much recorded head motion follows speech, and talking-head "
             "videos drawn from the trained model. Numbers are from this run.</p>"]
    clip_name = clip or "a test clip"
    if (out / TRUTH_VIDEO).is_file() and (out / GENERATED_VIDEO).is_file():
        parts += ["<h2>Recorded and generated motion, side by side</h2>",
                  f"<p>Both videos play {html.escape(clip_name)}'s audio and are drawn by the "
                  "same renderer from the same face; only the motion differs.</p>",
                  "<div class='pair'>",
                  _video(out, TRUTH_VIDEO, f"Ground truth: {html.escape(clip_name)}'s recorded "
                                           "head motion"),
                  _video(out, GENERATED_VIDEO, f"Generated from {html.escape(clip_name)}'s "
                                               "audio"),
                  "</div>"]
    shown = [(name, caption) for name, caption in videos if (out / name).is_file()]
    if shown:
        parts += ["<h2>More generated videos</h2>", "<div class='pair'>"]
        parts += [_video(out, name, html.escape(caption)) for name, caption in shown]
        parts.append("</div>")
    metrics_json = out / "evaluation" / "metrics.json"
    metrics_md = metrics_json.with_suffix(".md")
    if metrics_json.is_file():
        section, terms = sync_section(json.loads(metrics_json.read_text()))
        parts += ["<h2>Multi-scale sync of the generated motion (test split)</h2>", section,
                  "<p>All numbers: <a href='evaluation/metrics.md'>evaluation/metrics.md</a>."
                  "</p>"]
        glossary |= terms
    elif metrics_md.is_file() and markdown:
        parts += ["<h2>Multi-scale sync metrics (test split)</h2>",
                  markdown(metrics_md.read_text())]
    report_json, report_md = out / "analysis" / "report.json", out / "analysis" / "report.md"
    if report_json.is_file():
        section, terms = analysis_section(json.loads(report_json.read_text()))
        parts += ["<h2>Speech/head-motion analysis</h2>", section]
        glossary |= terms
    elif report_md.is_file() and markdown:
        parts += ["<h2>Speech/head-motion analysis</h2>", markdown(report_md.read_text())]
    plots = [p for folder in ("evaluation", "analysis") if (out / folder).is_dir()
             for p in sorted((out / folder).glob("*.png"))]
    if plots:
        parts.append("<h2>Plots</h2>")
        for plot in plots:
            heading, caption = plot_caption(plot)
            parts += [f"<h3>{html.escape(heading)}</h3>",
                      f"<p>{html.escape(caption)}</p>",
                      f"<img class='plot' src='{plot.parent.name}/{plot.name}' "
                      f"alt='{html.escape(heading)}'>"]
    if glossary:
        parts += ["<h2>Glossary</h2>", glossary_section(glossary)]
    if plan:
        parts += ["<h2>Reproduce</h2>", reproduce_section(plan)]
    parts += ["<h2>Stage wall times</h2>",
              _table(["stage", "wall time (s)"], [[k, f"{v:.1f}"] for k, v in timings.items()]),
              "</body></html>"]
    page = out / "index.html"
    page.write_text("\n".join(parts) + "\n")
    return page
