"""``msync demo``: the stage plan and the self-contained results page (the stages themselves are
each tested with their own command)."""

import pytest

from motion.app import cli, demo, demo_page
from motion.long_horizon import width_percent
from syncers.run import config as config_lib


def test_stages_chain_each_output_into_the_next(tmp_path):
    config = config_lib.load(demo.DemoConfig, demo.DEFAULT_CONFIG)
    plan = dict(demo.stages(config, tmp_path))
    assert list(plan) == ["synthesise corpus", "train syncers", "train generator", "evaluate",
                          "analyze", "generate videos"]
    data, syncers, generator = (str(tmp_path / p) for p in ("phantom", "syncers", "generator"))
    (synth,), (train_s,), (train_g,), (evaluate,), (analyze,) = (
        plan[k] for k in list(plan)[:5])
    assert synth[:4] == ["data", "synth", "--out", data]
    assert train_s[train_s.index("--out") + 1] == syncers
    assert train_g[train_g.index("--syncers") + 1] == syncers
    assert evaluate[evaluate.index("--model") + 1] == generator
    assert analyze[analyze.index("--points") + 1] == "0-4"
    for argv in plan["generate videos"]:      # the leak keeps the motion in place: no detrending
        assert "--drift-window" not in argv
    with_window = config_lib.load(demo.DemoConfig, demo.DEFAULT_CONFIG, ["drift_window_s=2"])
    for argv in dict(demo.stages(with_window, tmp_path))["generate videos"]:
        if "--keypoints" in argv:               # recorded motion is drawn as recorded
            assert "--drift-window" not in argv
        else:
            assert argv[argv.index("--drift-window") + 1] == "2.0"
    # Every planned command parses (flags exist, values are valid).
    parser = cli.build_parser()
    for commands in plan.values():
        for argv in commands:
            parser.parse_args(argv)


def test_index_page_links_videos_tables_and_plots_relatively(tmp_path):
    (tmp_path / "phantom.mp4").write_bytes(b"")
    (tmp_path / "evaluation").mkdir()
    (tmp_path / "evaluation" / "metrics.md").write_text(
        "# Sync metrics\n\n| level | pairs | mean \\|AV-Off\\| |\n|---|---|---|\n"
        "| 1 | gt | 0.00 |\n")
    (tmp_path / "analysis").mkdir()
    (tmp_path / "analysis" / "lag_curve.png").write_bytes(b"")
    page = demo.write_index(tmp_path, {"train syncers": 12.5}).read_text()
    assert "<video id='phantom' src='phantom.mp4'" in page
    assert "<th>mean |AV-Off|</th>" in page and "<td>0.00</td>" in page
    assert "src='analysis/lag_curve.png'" in page
    assert str(tmp_path) not in page            # relative links only: opens without a server
    assert "<td>12.5</td>" in page


def test_index_page_has_posters_and_leaves_markdown_images_to_the_plots(tmp_path):
    import numpy as np

    from syncers.data.video import write_video

    frames = np.zeros((30, 32, 32, 3), np.uint8)
    frames[25:] = 200                          # the poster is the frame at 1 s
    write_video(tmp_path / "real.mp4", frames)
    (tmp_path / "analysis").mkdir()
    (tmp_path / "analysis" / "report.md").write_text(
        "# Analysis\n\nSome text.\n\n![AV-Off histograms, scale 1](offsets_scale1.png)\n")
    page = demo.write_index(tmp_path, {}).read_text()
    assert "poster='real_poster.png'" in page
    import imageio.v3 as iio
    assert iio.imread(tmp_path / "real_poster.png").mean() > 150
    assert "<p>Some text.</p>" in page and "![" not in page


def test_too_small_corpus_is_one_line_exit_2(tmp_path, capsys):
    assert cli.main(["demo", "--out", str(tmp_path / "d"), "--set", "corpus.clips=5"]) == 2
    assert capsys.readouterr().err.strip() == (
        "msync: error: --set: corpus.clips must be from 20 to 100000; got 5")
    assert cli.main(["demo", "--out", str(tmp_path / "d"), "--set", "drift_window_s=-1"]) == 2
    assert capsys.readouterr().err.strip() == (
        "msync: error: --set: drift_window_s must be from 0 to 600; got -1.0")
    assert cli.main(["demo", "--out", str(tmp_path / "d"), "--set", "no.such=1"]) == 2
    assert not (tmp_path / "d").exists()


def _level(generated, random):
    return {"gt": {"av_off_mean": 0.0, "av_off_std": 0.0, "av_conf_mean": 0.8, "avs_u_mean": 0.9},
            "random": {"av_off_mean": random, "av_off_std": 3.0, "av_conf_mean": 0.2,
                       "avs_u_mean": 0.1},
            "generated": {"av_off_mean": generated, "av_off_std": 0.5, "av_conf_mean": 0.6,
                          "avs_u_mean": 0.7, "avs_m_mean": 0.8, "avs_v_mean": 0.75}}


def test_sync_verdict_names_the_windows_in_sync_and_the_levels_no_better_than_random():
    levels = {"1": _level(0.0, 7.0), "2": _level(0.3, 8.0), "3": _level(0.1, 7.5),
              "4": _level(8.45, 7.60)}
    assert demo_page.sync_verdict(levels) == (
        "Generated motion is in sync at 200–800 ms (levels 1–3): mean |AV-Off| 0.0–0.3 "
        "frames, random pairs 7.0–8.0; it is no better than random at 1.6 s (level 4) "
        "(8.45 vs random 7.60 frames).")
    # Above 2 frames but at most half of random still counts as in sync; between, it is
    # nearer than random; equal to random is no better.
    assert demo_page.level_status(3.0, 7.0) == "in sync"
    assert demo_page.level_status(5.0, 7.0) == "nearer than random"
    assert demo_page.level_status(7.0, 7.0) == "no better than random"
    assert demo_page.sync_verdict({"1": _level(7.5, 7.5), "2": _level(0.0, 8.0)}) == (
        "Generated motion is no better than random at 200 ms (level 1) (7.50 vs random 7.50 "
        "frames); it is in sync at 400 ms (level 2): mean |AV-Off| 0.0 frames, random pairs "
        "8.0.")


def test_windows_and_distances_in_units():
    assert [demo_page.segment_ms(level) for level in (1, 2, 3, 4)] == [200, 400, 800, 1600]
    assert [demo_page.frame_ms(level) for level in (1, 4)] == [40, 320]
    # [-1, 1] spans the frame: 2 = 100 %
    assert width_percent(0.1) == pytest.approx(5.0, rel=1e-12)
    assert demo_page.drift_verdict({"finite": True, "after_10s": 0.02, "after_60s": 0.12,
                                    "gt_end_of_clip": 0.03, "gt_clip_seconds": 7.96}) == (
        "After 60 s the head is 6.0 % of the frame width from where it started (after 10 s "
        "1.0 %); the ground truth moves 1.5 % over its 7.96 s clip.")
    assert "non-finite" in demo_page.drift_verdict({"finite": False, "after_60s": None})
    assert demo_page.analysis_verdict({
        "1": {"p_gt_vs_random": 0.001}, "2": {"p_gt_vs_random": 0.2}}) == (
        "Head motion follows the speech significantly at 200 ms (p = 0.001) (ground-truth "
        "|AV-Off| smaller than random); not at 400 ms (p = 0.2).")


def _finished_run(out):
    """A demo directory with metrics.json and report.json as the stages write them."""
    import json

    (out / "evaluation").mkdir()
    (out / "evaluation" / "metrics.json").write_text(json.dumps({
        "levels": {"1": _level(0.0, 7.0), "2": _level(9.0, 8.0)}, "n_clips": 20,
        "clip_frames": 200, "split": "test",
        "generated_stats": {"l_rec": 0.009, "l_rec_std": 0.001,
                            "generated": {"velocity_pos": 0.01, "acceleration_pos": 0.01,
                                          "velocity_all": 0.005, "acceleration_all": 0.005},
                            "gt": {"velocity_pos": 0.006, "acceleration_pos": 0.006,
                                   "velocity_all": 0.007, "acceleration_all": 0.009}},
        "mouth_sync": {"generated": 0.5, "gt": 0.9, "generated_mouth_mean": 0.3,
                       "gt_mouth_mean": 0.3},
        "drift": {"finite": True, "after_10s": 0.02, "after_60s": 0.05, "gt_end_of_clip": 0.03,
                  "gt_clip_seconds": 7.96}}))
    (out / "analysis").mkdir()
    (out / "analysis" / "report.json").write_text(json.dumps({
        "scales": {"1": {"gt": {"av_off_mean": 0.5, "av_off_std": 1.0},
                         "random": {"av_off_mean": 7.0, "av_off_std": 4.0},
                         "p_gt_vs_random": 0.001}},
        "points": [0, 1, 2, 3, 4], "n_clips": 40}))
    for plot in ("lag_curve.png", "offsets_scale1.png"):
        (out / "analysis" / plot).write_bytes(b"")


def test_page_from_json_has_verdicts_units_and_a_glossary_entry_per_metric_shown(tmp_path):
    import re

    _finished_run(tmp_path)
    page = demo.write_index(tmp_path, {"evaluate": 3.0}).read_text()
    verdicts = re.findall(r"<p class='verdict'>(.*?)</p>", page)
    assert "no better than random at 400 ms (level 2) (9.00 vs random 8.00 frames)" in verdicts[0]
    assert any(v.startswith("After 60 s the head is 2.5 % of the frame width") for v in verdicts)
    assert any(v.startswith("Head motion follows the speech significantly at 200 ms")
               for v in verdicts)
    headers = re.findall(r"<th[^>]*>(.*?)</th>", page)
    for header in headers:                       # every quantity carries its unit
        if header not in ("level", "pairs", "stage", "scale", "statistic", "after",
                          "generated", "ground truth"):
            assert "(" in header, header
    defined = set(re.findall(r"<dt>(.*?)</dt>", page))
    labels = headers + re.findall(r"<td class='l'>(.*?)</td>", page)   # column and row names
    shown = {term for term in demo_page.GLOSSARY
             if any(re.search(rf"(^|\W){re.escape(term)}(\W|$)", h) for h in labels)}
    assert {"AV-Off", "AV-Conf", "AVS_u", "AVS_m", "AVS_v", "L_rec", "speed", "acceleration",
            "mouth sync", "p"} <= shown
    assert shown <= defined
    # every plot has a heading and a caption in words
    for plot in ("lag_curve.png", "offsets_scale1.png"):
        heading, caption = demo_page.plot_caption(tmp_path / "analysis" / plot)
        assert f"<h3>{heading}</h3>\n<p>{caption}</p>\n<img class='plot' src='analysis/{plot}'" \
            in page.replace("&#x27;", "'")


def test_the_side_by_side_pair_plays_one_test_clips_audio_from_one_face(tmp_path):
    config = config_lib.load(demo.DemoConfig, demo.DEFAULT_CONFIG)
    videos = dict(demo.stages(config, tmp_path))["generate videos"]
    truth, = [a for a in videos if a[a.index("--out") + 1].endswith(demo.TRUTH_VIDEO)]
    generated, = [a for a in videos if a[a.index("--out") + 1].endswith(demo.GENERATED_VIDEO)]
    clip = demo.comparison_clip(config.corpus)
    npz = truth[truth.index("--keypoints") + 1]
    assert npz == str(tmp_path / "phantom" / "test" / f"{clip}.npz")
    assert truth[truth.index("--audio") + 1] == generated[generated.index("--audio") + 1] \
        == npz[:-len(".npz")] + ".wav"
    assert "--keypoints" not in generated
    for argv in (truth, generated):             # the same face and renderer
        assert "--image" not in argv and "--renderer" not in argv
    from syncers.data.dataset import split_for
    index = int(clip.split("-")[1])
    assert split_for(index, config.corpus.clips) == "test"
    assert split_for(index - 1, config.corpus.clips) == "val"      # the first test clip


def test_reproduce_lists_exactly_the_planned_commands(tmp_path):
    import shlex

    config = config_lib.load(demo.DemoConfig, demo.DEFAULT_CONFIG,
                             ["analyze.points=0-2", "corpus.seconds=9"])
    for name in (demo.TRUTH_VIDEO, demo.GENERATED_VIDEO):
        (tmp_path / name).write_bytes(b"")
    page = demo.write_index(tmp_path, {}, config).read_text()
    planned = [argv for _, commands in demo.stages(config, tmp_path) for argv in commands]
    assert demo_page.reproduce_commands(page) == planned
    assert shlex.join(["msync", *planned[0]]) in page
    clip = demo.comparison_clip(config.corpus)
    assert f"Ground truth: {clip}'s recorded head motion" in page
    assert f"Generated from {clip}'s audio" in page


def test_mouth_verdict_says_whether_the_mouth_follows_the_speech():
    assert demo_page.mouth_verdict({"generated": -0.18, "gt": 0.98}).startswith(
        "The generated mouth does not follow the loudness of the speech (r = -0.18; the "
        "recorded mouths 0.98)")
    assert "as the recorded mouths do (r = 0.15 against 0.09)" in demo_page.mouth_verdict(
        {"generated": 0.15, "gt": 0.09})
    assert "more weakly than the recorded mouths (r = 0.40 against 0.98)" in \
        demo_page.mouth_verdict({"generated": 0.40, "gt": 0.98})
