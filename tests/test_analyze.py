"""``msync analyze`` (the paper's Table 2 protocol): points parsing, statistics, report, errors."""
import json
import shutil

import numpy as np
import pytest
import yaml

from motion.app import analyze
from motion.app import cli
from syncers.data.dataset import Clip, read_clip, write_clip, write_manifest
from syncers.run.errors import InputError
from syncer_data import TINY_ANALYZE as TINY
from syncer_data import make_dataset
from run_helpers import held_by_another_process, refused_as_in_use



@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("analyze-data") / "data"
    return make_dataset(root, n_train=4, n_test=3, n_frames=120)


@pytest.fixture(scope="module")
def tiny_yaml(tmp_path_factory):
    path = tmp_path_factory.mktemp("analyze-config") / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


@pytest.fixture(scope="module")
def generated(data, tmp_path_factory):
    """Generated motion for two of the three test clips (same ids, in the train split)."""
    root = tmp_path_factory.mktemp("analyze-generated") / "gen"
    entries = []
    for clip_id in ("test000", "test002"):
        clip = read_clip(data, "test", clip_id)
        noisy = clip.keypoints + np.float32(0.01) * np.random.default_rng(1).standard_normal(
            clip.keypoints.shape).astype(np.float32)
        write_clip(root, "train", clip_id, noisy, clip.audio_features)
        entries.append((clip_id, clip.n_frames))
    write_manifest(root, {"train": entries}, keypoint_space="test-v1", features={"kind": "test"})
    return root


@pytest.fixture(scope="module")
def analysed(data, tiny_yaml, generated, tmp_path_factory):
    out = tmp_path_factory.mktemp("analyze-out") / "out"
    code = cli.main(["analyze", "--data", str(data), "--out", str(out), "--points", "0-4,8",
                     "--scales", "2", "--split", "test", "--config", str(tiny_yaml),
                     "--generated", str(generated)])
    assert code == 0
    return out


# --------------------------------------------------------------------------- points

@pytest.mark.parametrize("text, expected", [
    ("17-47", tuple(range(17, 48))), ("0-4", (0, 1, 2, 3, 4)), ("0,2,5-7", (0, 2, 5, 6, 7)),
    (" 3 , 1-2 ", (1, 2, 3)), ("4,4,2-4", (2, 3, 4)), ("7", (7,)),
])
def test_parse_points(text, expected):
    assert analyze.parse_points(text) == expected


@pytest.mark.parametrize("text, message", [
    ("", "is not a point index"), ("a-b", "is not a point index"), ("5-3", "runs backwards"),
    ("-3", "is not a point index"), ("1,,2", "is not a point index"), ("1-2-3", "not a point"),
    ("0-1000000000000", "point 1000000000000 is out of range: indices run from 0 to 999"),
    ("5,1000", "point 1000 is out of range"),
])
def test_parse_points_errors(text, message):
    with pytest.raises(InputError, match=message) as err:
        analyze.parse_points(text)
    assert str(err.value).startswith("--points: ")


# --------------------------------------------------------------------------- statistics

def test_mann_whitney_small_when_gt_in_sync_and_random_spread():
    rng = np.random.default_rng(0)
    gt = np.zeros(20)
    random = rng.integers(-15, 16, 20)
    p = analyze.mann_whitney_p(gt, random)
    assert p < 1e-4
    # One-sided: the reverse question (random closer to sync than GT) is not significant.
    assert analyze.mann_whitney_p(random, gt) > 0.5
    # The sign of an offset does not matter, only its size.
    assert analyze.mann_whitney_p(-random, random) == pytest.approx(
        analyze.mann_whitney_p(random, random))


def test_mann_whitney_large_for_the_same_distribution():
    rng = np.random.default_rng(1)
    a, b = rng.integers(-15, 16, 40), rng.integers(-15, 16, 40)
    assert analyze.mann_whitney_p(a, b) > 0.05
    assert analyze.mann_whitney_p(np.zeros(5), np.zeros(7)) == 1.0   # all tied


def test_report_dict_layout_and_values():
    offsets = {1: {"gt": np.array([0, 0, 1, -1]), "random": np.array([5, -9, 12, 3])},
               2: {"gt": np.array([0, 2, 0, 0]), "random": np.array([7, 7, -7, 0]),
                   "generated": np.array([0, 0, -3, 4])}}
    report = analyze.report_dict(offsets, [0, 1, 2], 4)
    assert set(report) == {"scales", "points", "n_clips"}
    assert report["points"] == [0, 1, 2] and report["n_clips"] == 4
    assert set(report["scales"]["1"]) == {"gt", "random", "p_gt_vs_random"}
    assert report["scales"]["1"]["gt"] == {"av_off_mean": 0.5, "av_off_std": 0.5}
    assert report["scales"]["2"]["random"]["av_off_mean"] == pytest.approx(5.25)
    assert set(report["scales"]["2"]) == {"gt", "random", "generated", "p_gt_vs_random",
                                          "p_generated_vs_random"}


# --------------------------------------------------------------------------- motion source

def test_keypoint_tracks_are_centred_positions():
    rng = np.random.default_rng(0)
    keypoints = rng.standard_normal((30, 10, 6)).astype(np.float32)
    clip = Clip("c", keypoints, np.zeros((120, 26), np.float32))
    assert analyze.motion_source([clip]) == "keypoints"
    tracks = analyze.rigid_tracks(clip, "keypoints")
    assert tracks.shape == (30, 10, 2)
    np.testing.assert_allclose(tracks.mean(axis=0), 0.0, atol=1e-6)
    np.testing.assert_allclose(tracks, keypoints[..., :2] - keypoints[..., :2].mean(0), atol=1e-6)
    with_landmarks = Clip("d", keypoints, np.zeros((120, 26), np.float32),
                          landmarks=np.ones((30, 68, 2), np.float32))
    assert analyze.motion_source([with_landmarks]) == "landmarks"
    assert analyze.motion_source([with_landmarks, clip]) == "keypoints"


# --------------------------------------------------------------------------- end to end

def test_report_files_and_layout(analysed, generated):
    report = json.loads((analysed / "report.json").read_text())
    assert set(report) == {"scales", "points", "n_clips", "split", "generated"}
    assert report["points"] == [0, 1, 2, 3, 4, 8] and report["n_clips"] == 3
    assert report["split"] == "test" and report["generated"] == str(generated.resolve())
    assert set(report["scales"]) == {"1", "2"}
    for entry in report["scales"].values():
        assert set(entry) == {"gt", "random", "generated", "p_gt_vs_random",
                              "p_generated_vs_random", "n_clips", "clip_frames"}
        assert entry["n_clips"] == 3 and entry["clip_frames"] == 120
        for kind in ("gt", "random", "generated"):
            assert set(entry[kind]) == {"av_off_mean", "av_off_std"}
            assert 0.0 <= entry[kind]["av_off_mean"] <= analyze.MAX_OFFSET
        assert 0.0 <= entry["p_gt_vs_random"] <= 1.0
    for name in ("report.md", "offsets_scale1.png", "offsets_scale2.png", "lag_curve.png"):
        assert (analysed / name).stat().st_size > 0
    assert (analysed / "offsets_scale1.png").read_bytes()[:4] == b"\x89PNG"
    text = (analysed / "report.md").read_text()
    assert "| 1 | 200 ms |" in text and "| 2 | 400 ms |" in text and "Generated: 2 clips" in text
    # The syncers trained on the centred positions of the chosen points: 6 points × 2.
    run = json.loads((analysed / "syncers" / "run.json").read_text())
    assert run["motion_dim"] == 12 and set(run["levels"]) == {"1", "2"}


def test_rerun_resumes_and_rewrites_the_same_report(analysed, data, tiny_yaml, generated):
    before = json.loads((analysed / "report.json").read_text())
    assert cli.main(["analyze", "--data", str(data), "--out", str(analysed), "--points",
                     "0-4,8", "--scales", "2", "--split", "test", "--config", str(tiny_yaml),
                     "--generated", str(generated)]) == 0
    assert json.loads((analysed / "report.json").read_text()) == before


def test_non_ascii_paths_work(data, tmp_path, tiny_yaml):
    """Accents and emoji in --data and --out (the derived dataset's path once went through YAML
    and came back as surrogates)."""
    here = tmp_path / "dätä 😀"
    shutil.copytree(data, here)
    out = tmp_path / "öut 🎬"
    assert _run(here, out, tiny_yaml, "--points", "0-4", "--split", "test") == 0
    assert set(json.loads((out / "report.json").read_text())["scales"]) == {"1"}


def test_an_out_in_use_by_another_process_is_refused(data, tmp_path, tiny_yaml, capsys):
    out = tmp_path / "out"
    with held_by_another_process(out) as pid:
        assert _run(data, out, tiny_yaml, "--points", "0-4", "--split", "test") == 2
        assert refused_as_in_use(capsys.readouterr().err, out, pid)
    assert sorted(p.name for p in out.iterdir()) == [".lock"]       # nothing else written


def test_fewer_scales_into_the_same_out_keep_the_other_scales(analysed, data, tiny_yaml,
                                                             generated, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(analysed, out)
    before = json.loads((out / "report.json").read_text())
    levels_before = [json.loads(line) for line in
                     (out / "syncers" / "metrics.jsonl").read_text().splitlines()]
    common = ["analyze", "--data", str(data), "--out", str(out), "--points", "0-4,8",
              "--config", str(tiny_yaml), "--generated", str(generated)]
    assert cli.main(common + ["--scales", "1", "--split", "test"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report == before           # scale 1 scored again (the same), scale 2 kept
    assert [json.loads(line) for line in
            (out / "syncers" / "metrics.jsonl").read_text().splitlines()] == levels_before
    assert set(json.loads((out / "syncers" / "run.json").read_text())["levels"]) == {"1", "2"}
    assert "| 2 | 400 ms |" in (out / "report.md").read_text()
    # Another split is another analysis: the earlier scales do not describe it.
    assert cli.main(common + ["--scales", "1", "--split", "all"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert set(report["scales"]) == {"1"} and report["split"] == "all"


def _run(data, out, tiny_yaml, *extra):
    return cli.main(["analyze", "--data", str(data), "--out", str(out), "--config",
                     str(tiny_yaml), "--scales", "1", *extra])


@pytest.mark.parametrize("extra, message", [
    (("--points", "0-10"), "point 10 is out of range: the data's keypoints have 10 points"),
    (("--points", "17-47"), "--points 0-4"),
    (("--points", "x"), "--points: 'x' is not a point index"),
    (("--points", "0-4", "--scales", "5"), "expected 1 to 4 scales"),
    (("--points", "0-4", "--split", "val"), "split 'val' has 0 clips"),
])
def test_bad_inputs_exit_2_with_one_line(data, tmp_path, tiny_yaml, capsys, extra, message):
    assert _run(data, tmp_path / "out", tiny_yaml, *extra) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


def test_missing_data_and_foreign_generated(data, tmp_path, tiny_yaml, capsys):
    assert _run(tmp_path / "nowhere", tmp_path / "out", tiny_yaml, "--points", "0-4") == 2
    assert "no such dataset directory" in capsys.readouterr().err
    foreign = tmp_path / "foreign"
    clip = read_clip(data, "test", "test000")
    write_clip(foreign, "test", "test000", clip.keypoints, clip.audio_features)
    write_manifest(foreign, {"test": [("test000", clip.n_frames)]}, keypoint_space="other-v1",
                   features={"kind": "test"})
    assert _run(data, tmp_path / "out", tiny_yaml, "--points", "0-4", "--split", "test",
                "--generated", str(foreign)) == 2
    assert "keypoint_space 'other-v1' differs" in capsys.readouterr().err


def test_other_data_into_the_same_out_is_refused(analysed, tiny_yaml, tmp_path, capsys):
    other = make_dataset(tmp_path / "other", n_train=3, n_test=2, n_frames=120, seed=5)
    assert cli.main(["analyze", "--data", str(other), "--out", str(analysed), "--points",
                     "0-4,8", "--scales", "2", "--split", "test", "--config",
                     str(tiny_yaml)]) == 2
    assert "use a new --out" in capsys.readouterr().err


def test_videos_are_prepared_first_and_bad_folders_are_one_line(tmp_path, capsys):
    from motion.app import cli
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.main(["analyze", "--videos", str(empty), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no videos" in err
    assert cli.main(["analyze", "--videos", str(empty), "--out", str(tmp_path / "o"),
                     "--generated", str(tmp_path)]) == 2
    assert "not --videos" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:                # one of --data / --videos
        cli.main(["analyze", "--data", "a", "--videos", "b", "--out", str(tmp_path / "o")])
    assert usage.value.code == 2
