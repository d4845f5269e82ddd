"""``msync demo``: the stage plan and the self-contained results page (the stages themselves are
each tested with their own command)."""

from motion.app import cli
from motion.app import demo
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
        "# Sync metrics\n\n| level | pairs | mean \\|AV-Off\\| |\n|---|---|---|\n| 1 | gt | 0.00 |\n")
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

    from render.video import write_video

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
