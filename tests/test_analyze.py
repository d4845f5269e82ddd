"""``msync analyze`` (the paper's Table 2 protocol): points parsing, statistics, report, errors."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from run_helpers import held_by_another_process, refused_as_in_use
from syncer_data import TINY_ANALYZE as TINY
from syncer_data import make_dataset

from motion.app import analyze, cli
from syncers.data.dataset import Clip, read_clip, write_clip, write_manifest
from syncers.run.errors import InputError


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
                     "--scales", "2", "--folds", "3", "--config", str(tiny_yaml),
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

def test_permutation_p_small_when_own_pairs_in_sync():
    rng = np.random.default_rng(0)
    off = rng.integers(5, 16, (30, 30)).astype(float)
    np.fill_diagonal(off, 0.0)
    # 30 clips in sync against spread re-pairings: no permutation of 10 000 gets close.
    assert analyze.permutation_p([(off, np.arange(30))], np.random.default_rng(1)) == \
        pytest.approx(1 / 10_001)


def test_permutation_p_is_uniform_under_the_null():
    """Offsets independent of the pairing (each motion has its own typical offset, the
    dependence that made one fixed re-pairing misleading): p-values spread over [0, 1]."""
    rng = np.random.default_rng(2)
    ps = []
    for _ in range(200):
        row = rng.integers(0, 16, (20, 1))
        off = np.clip(row + rng.integers(-3, 4, (20, 20)), 0, 15).astype(float)
        ps.append(analyze.permutation_p([(off, np.arange(20))], rng, permutations=500))
    ps = np.array(ps)
    assert 0.02 <= np.mean(ps < 0.05) <= 0.09          # 5 % expected; binomial sd 1.5 %
    assert 0.4 <= np.median(ps) <= 0.6


def test_permutation_p_of_tiny_groups_cannot_be_small():
    """Two clips: the recorded pairing is one of two; p is about 1/2 however far apart."""
    off = np.array([[0.0, 15.0], [15.0, 0.0]])
    p = analyze.permutation_p([(off, np.arange(2))], np.random.default_rng(0))
    assert 0.45 <= p <= 0.55
    # Rows are a subset of the group (generated motion for some clips only).
    off = np.array([[15.0, 0.0, 15.0]])
    assert analyze.permutation_p([(off, np.array([1]))], np.random.default_rng(0)) == \
        pytest.approx(1 / 3, abs=0.02)


# --------------------------------------------------------------------------- speakers, folds

def _clip(clip_id, n_frames=100, **meta):
    return Clip(clip_id, np.zeros((n_frames, 10, 6), np.float32),
                np.zeros((4 * n_frames, 26), np.float32), meta=meta)


def test_speaker_of_each_rule():
    table = {"guest_001.mp4": "Ada"}
    assert analyze.speaker_of(_clip("a", source="/v/guest_001.mp4"), table) == ("Ada", "table")
    assert analyze.speaker_of(_clip("b", source="/v/guest_002.mp4"), table) == \
        ("guest", "file name")
    assert analyze.speaker_of(_clip("c", source="/v/x.mp4", speaker="Bo"), None) == ("Bo", "meta")
    assert analyze.speaker_of(_clip("phantom-00007", source="phantom"), None) == \
        ("phantom-00007", "phantom")
    assert analyze.speaker_of(_clip("WDA_KatieHill_000"), None) == ("WDA_KatieHill", "file name")
    # Speaker folders (VoxCeleb's id/video/clip.mp4): the folder under the videos' root, as
    # prepare splits them, not the clip's file name (00001 in every folder).
    vox = [_clip(f"c{i}", source=f"/vox/id{i % 2}/v{i}/00001.mp4") for i in range(4)]
    root = analyze.video_root(vox)
    assert root == Path("/vox")
    assert [analyze.speaker_of(c, None, root) for c in vox] == \
        [("id0", "folder"), ("id1", "folder")] * 2
    flat = [_clip("a", source="/v/Ada_001.mp4"), _clip("b", source="/v/Bo_001.mp4")]
    assert analyze.speaker_of(flat[0], None, analyze.video_root(flat)) == ("Ada", "file name")
    assert analyze.video_root([_clip("p", source="phantom")]) is None


@pytest.mark.parametrize("sizes, folds", [((1,) * 7, 3), ((5, 1, 1, 4, 2, 2, 3, 1), 5),
                                          ((3, 3), 2), ((10, 1, 1, 1, 1), 5)])
def test_folds_hold_every_clip_once_and_each_speaker_in_one_fold(sizes, folds):
    speakers = {f"s{i}_c{j}": f"s{i}" for i, n in enumerate(sizes) for j in range(n)}
    fold_of = analyze.assign_folds(speakers, folds)
    assert sorted(fold_of) == sorted(speakers)                      # every clip, once
    assert set(fold_of.values()) == set(range(folds))               # no empty fold
    for speaker in set(speakers.values()):
        assert len({fold_of[c] for c, s in speakers.items() if s == speaker}) == 1
    # The same speakers read in another order get the same folds.
    assert analyze.assign_folds(dict(reversed(list(speakers.items()))), folds) == fold_of
    load = np.bincount(list(fold_of.values()), minlength=folds)
    assert load.max() - load.min() <= max(sizes)
    with pytest.raises(ValueError, match="speakers cannot fill"):
        analyze.assign_folds(speakers, len(sizes) + 1)


def test_default_folds_leave_no_fold_of_one_clip():
    assert analyze.default_folds({f"c{i}": f"s{i}" for i in range(40)}) == 5
    assert analyze.default_folds({f"c{i}": f"s{i}" for i in range(7)}) == 3      # 3, 2, 2
    assert analyze.default_folds({f"c{i}": f"s{i}" for i in range(3)}) == 2
    # One speaker with most clips: the others must still make folds of two.
    many = {f"a{i}": "a" for i in range(20)} | {f"b{i}": f"b{i}" for i in range(6)}
    assert analyze.default_folds(many) == 4                                       # 20, 2, 2, 2


def test_a_speaker_holding_most_clips_is_warned_about():
    merged = {f"clip{i}": "interview" for i in range(7)} | {f"o{i}": f"o{i}" for i in range(5)}
    by_name = dict.fromkeys(merged, "file name")
    (text,) = analyze.grouping_warnings(merged, by_name)
    assert "'interview' (from the file name rule) holds 7 of the 12 clips" in text
    assert "--speakers" in text
    spread = {f"c{i}": f"s{i % 6}" for i in range(12)}
    assert analyze.grouping_warnings(spread, dict.fromkeys(spread, "file name")) == []
    # A grouping the user gave is taken as given (the corpus's one-speaker interview).
    assert analyze.grouping_warnings(merged, dict.fromkeys(merged, "table")) == []


def test_scoring_groups_account_for_every_clip():
    need = [analyze.frames_needed(s) for s in (1, 2, 3)]
    assert need[0] < need[1] < need[2] == 97                   # 800 ms: 3.88 s
    lengths = {"short": need[2] - 1, "a": need[2], "b": need[2] + 5, "c": 2 * need[2] + 3,
               "d": 8 * need[2] + 50, "e": 9 * need[2]}
    groups, dropped = analyze.scoring_groups(lengths, 3)
    grouped = [c for _, members in groups for c in members]
    assert sorted(grouped + list(dropped)) == sorted(lengths)   # each clip exactly once
    assert dropped == {"short": "too short for 800 ms: 3.84 s < 3.88 s"}
    for frames, members in groups:
        assert len(members) >= 2 and all(lengths[c] >= frames for c in members)
    # d and e share the top rung (8 × need); c alone at 2 × need joins a and b.
    assert sorted(groups) == [(need[2], ["a", "b", "c"]), (8 * need[2], ["d", "e"])]
    # A lone shortest clip is scored with the next rung's pair, cut to its length ...
    lengths = {"a": need[2] + 1, "d": 8 * need[2] + 50, "e": 9 * need[2]}
    groups, dropped = analyze.scoring_groups(lengths, 3)
    assert groups == [(need[2], ["a", "d", "e"])] and dropped == {}
    # ... or with its shortest clip alone where the rest of that rung stay a group.
    lengths["f"] = 10 * need[2]
    groups, dropped = analyze.scoring_groups(lengths, 3)
    assert groups == [(need[2], ["a", "d"]), (8 * need[2], ["e", "f"])] and dropped == {}
    groups, dropped = analyze.scoring_groups({"x": 500, "y": 40}, 3)
    assert groups == [] and set(dropped) == {"x", "y"}
    assert "the only clip of its fold" in dropped["x"] and "too short" in dropped["y"]


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
    assert set(report) == {"scales", "not_scored", "points", "n_clips", "folds", "speakers",
                           "joined", "generated", "seconds", "train_seconds"}
    assert report["not_scored"] == {} and report["joined"] is None
    assert report["points"] == [0, 1, 2, 3, 4, 8] and report["n_clips"] == 7
    assert report["folds"] == 3 and report["generated"] == str(generated.resolve())
    assert report["speakers"] == {"n": 7, "rule": ["file name"], "warnings": [], "table": None}
    assert report["seconds"] >= report["train_seconds"] > 0
    assert set(report["scales"]) == {"1", "2"}
    for entry in report["scales"].values():
        assert {"gt", "random", "generated", "p_gt_vs_random", "p_generated_vs_random",
                "n_clips", "n_random_pairs", "clip_frames", "dropped"} <= set(entry)
        # 120-frame clips: every clip scored once, in groups of its fold, none dropped.
        assert entry["n_clips"] == 7 and entry["dropped"] == {}
        assert entry["n_generated"] == 2
        # The shifted-audio control: every clip's audio 20 level frames on, over 120 frames
        # less the shift (76 and 58 frames at scales 1 and 2).
        assert entry["n_shifted"] == 7 and 0.0 < entry["p_shifted_vs_random"] <= 1.0
        for kind in ("gt", "random", "generated"):
            assert set(entry[kind]) == {"av_off_mean", "av_off_std"}
            assert 0.0 <= entry[kind]["av_off_mean"] <= analyze.MAX_OFFSET
        assert 0.0 < entry["p_gt_vs_random"] <= 1.0
    for name in ("report.md", "offsets_scale1.png", "offsets_scale2.png", "lag_curve.png"):
        assert (analysed / name).stat().st_size > 0
    assert (analysed / "offsets_scale1.png").read_bytes()[:4] == b"\x89PNG"
    text = (analysed / "report.md").read_text()
    assert "| 1 | 200 ms | 7 |" in text and "| 2 | 400 ms | 7 |" in text
    assert "3-fold cross-validation" in text and "the whole command" in text
    # Each fold's syncers trained on the centred positions of the chosen points: 6 × 2.
    for fold in (1, 2, 3):
        run = json.loads((analysed / f"fold{fold}" / "syncers" / "run.json").read_text())
        assert run["motion_dim"] == 12 and set(run["levels"]) == {"1", "2"}
    # No clip is in the training set of the fold that scores it.
    trained = [set(json.loads((analysed / f"fold{f}" / "rigid" / "manifest.json").read_text())
                   ["extra"]["clips"]) for f in (1, 2, 3)]
    assert all(len(t) in (4, 5) for t in trained)
    assert set.intersection(*trained) == set()
    assert sorted(c for t in trained for c in t) == sorted(2 * [c for c in (
        *(f"train{i:03d}" for i in range(4)), *(f"test{i:03d}" for i in range(3)))])


def test_pair_metrics_equal_level_metrics_of_each_pair(analysed, data):
    from syncers.metrics import level_metrics, pair_metrics
    from syncers.train import load_run
    run = load_run(analysed / "fold1" / "syncers", (1, 2))
    rng = np.random.default_rng(0)
    motion = rng.standard_normal((3, 120, 12)).astype(np.float32)
    audio = rng.standard_normal((4, 480, 26)).astype(np.float32)
    kw = {"model": run.model, "level": 2, "kind": "box", "k": 3, "score": run.info["score"]}
    both = pair_metrics(run.params[2], motion, audio, **kw)
    assert both["av_off"].shape == (3, 4) and both["distances"].shape == (3, 4, 31)
    for c in range(4):
        one = level_metrics(run.params[2], motion, np.repeat(audio[c:c + 1], 3, axis=0), **kw)
        np.testing.assert_array_equal(np.asarray(both["av_off"])[:, c], one["av_off"])
        np.testing.assert_allclose(np.asarray(both["distances"])[:, c], one["distances"],
                                   rtol=0, atol=1e-5 * np.abs(one["distances"]).max())


def test_rerun_resumes_and_rewrites_the_same_report(analysed, data, tiny_yaml, generated):
    before = json.loads((analysed / "report.json").read_text())
    assert cli.main(["analyze", "--data", str(data), "--out", str(analysed), "--points",
                     "0-4,8", "--scales", "2", "--folds", "3", "--config", str(tiny_yaml),
                     "--generated", str(generated)]) == 0
    after = json.loads((analysed / "report.json").read_text())
    timing = ("seconds", "train_seconds")
    assert {k: v for k, v in after.items() if k not in timing} == \
        {k: v for k, v in before.items() if k not in timing}


def test_non_ascii_paths_work(data, tmp_path, tiny_yaml):
    """Accents and emoji in --data and --out (the derived dataset's path once went through YAML
    and came back as surrogates)."""
    here = tmp_path / "dätä 😀"
    shutil.copytree(data, here)
    out = tmp_path / "öut 🎬"
    assert _run(here, out, tiny_yaml, "--points", "0-4", "--folds", "2") == 0
    assert set(json.loads((out / "report.json").read_text())["scales"]) == {"1"}


def test_an_out_in_use_by_another_process_is_refused(data, tmp_path, tiny_yaml, capsys):
    out = tmp_path / "out"
    with held_by_another_process(out) as pid:
        assert _run(data, out, tiny_yaml, "--points", "0-4", "--folds", "2") == 2
        assert refused_as_in_use(capsys.readouterr().err, out, pid)
    assert sorted(p.name for p in out.iterdir()) == [".lock"]       # nothing else written


def test_fewer_scales_into_the_same_out_keep_the_other_scales(analysed, data, tiny_yaml,
                                                             generated, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(analysed, out)
    before = json.loads((out / "report.json").read_text())
    common = ["analyze", "--data", str(data), "--out", str(out), "--points", "0-4,8",
              "--config", str(tiny_yaml), "--generated", str(generated), "--folds", "3"]
    assert cli.main(common + ["--scales", "1"]) == 0
    report = json.loads((out / "report.json").read_text())
    # Scale 1 scored again (the same), scale 2 kept.
    assert report["scales"] == before["scales"]
    assert "| 2 | 400 ms |" in (out / "report.md").read_text()
    # Other points are another analysis: the earlier scales do not describe it.
    assert cli.main(["analyze", "--data", str(data), "--out", str(tmp_path / "o2"), "--points",
                     "0-4", "--config", str(tiny_yaml), "--folds", "2", "--scales", "1"]) == 0


def _run(data, out, tiny_yaml, *extra):
    return cli.main(["analyze", "--data", str(data), "--out", str(out), "--config",
                     str(tiny_yaml), "--scales", "1", *extra])


@pytest.mark.parametrize("extra, message", [
    (("--points", "0-10"), "point 10 is out of range: the data's keypoints have 10 points"),
    (("--points", "17-47"), "--points 0-4"),
    (("--points", "x"), "--points: 'x' is not a point index"),
    (("--points", "0-4", "--scales", "5"), "expected 1 to 4 scales"),
    (("--points", "0-4", "--folds", "1"), "--folds: cross-validation needs at least 2 folds"),
    (("--points", "0-4", "--folds", "7"), "no fold has 2 clips of 0.96 s or more"),
    (("--points", "0-4", "--folds", "8"), "--folds: 8 folds need 8 speakers; the data has 7"),
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
    assert _run(data, tmp_path / "out", tiny_yaml, "--points", "0-4", "--folds", "2",
                "--generated", str(foreign)) == 2
    assert "keypoint_space 'other-v1' differs" in capsys.readouterr().err


def test_other_data_into_the_same_out_is_refused(analysed, tiny_yaml, tmp_path, capsys):
    other = make_dataset(tmp_path / "other", n_train=3, n_test=2, n_frames=120, seed=5)
    assert cli.main(["analyze", "--data", str(other), "--out", str(analysed), "--points",
                     "0-4,8", "--scales", "2", "--folds", "3", "--config",
                     str(tiny_yaml)]) == 2
    assert "use a new --out" in capsys.readouterr().err


def test_a_scale_no_clip_reaches_is_reported_with_why(data, tmp_path, tiny_yaml, capsys):
    """1600 ms needs 7.72 s; the 4.8 s clips are listed as too short, the finer scales scored."""
    out = tmp_path / "out"
    assert _run(data, out, tiny_yaml, "--points", "0-4", "--folds", "2", "--scales", "4") == 0
    report = json.loads((out / "report.json").read_text())
    assert set(report["scales"]) == {"1", "2", "3"} and set(report["not_scored"]) == {"4"}
    dropped = report["not_scored"]["4"]["dropped"]
    assert len(dropped) == 7 and report["scales"]["3"]["dropped"] == {}
    assert set(dropped.values()) == {"too short for 1600 ms: 4.80 s < 7.72 s"}
    assert "- 1600 ms: no clip scored; not scored: 7 too short for 1600 ms" in \
        (out / "report.md").read_text()
    assert "1600 ms: no clip long enough" in capsys.readouterr().err


def test_an_implausible_speaker_grouping_is_stated_and_a_table_overrides_it(data, tmp_path,
                                                                           tiny_yaml, capsys):
    """Five interview pieces of different guests share a file-name prefix: one "speaker" by
    the file-name rule, warned about; --speakers names them (both refused before training,
    by a --folds the speakers cannot fill)."""
    root = tmp_path / "interviews"
    names = [f"interview_{i:03d}.mp4" for i in range(5)] + ["Ada_000.mp4", "Bo_000.mp4"]
    clip = read_clip(data, "test", "test000")
    for name in names:
        write_clip(root, "test", name[:-4], clip.keypoints, clip.audio_features,
                   meta={"source": f"/videos/{name}"})
    write_manifest(root, {"test": [(n[:-4], clip.n_frames) for n in names]},
                   keypoint_space="test-v1", features={"kind": "test"})
    assert _run(root, tmp_path / "out", tiny_yaml, "--points", "0-4", "--folds", "4") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2
    assert "speaker 'interview' (from the file name rule) holds 5 of the 7 clips" in err[0]
    assert "--folds: 4 folds need 4 speakers; the data has 3 (by file name)" in err[1]
    table = tmp_path / "speakers.tsv"
    table.write_text("file\tspeaker\n" + "".join(f"{n}\tguest{i}\n" for i, n in enumerate(names)))
    assert _run(root, tmp_path / "out", tiny_yaml, "--points", "0-4", "--folds", "8",
                "--speakers", str(table)) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "--folds: 8 folds need 8 speakers; the data has 7 (by table)" in line
    # All one speaker: nothing to cross-validate.
    table.write_text("file\tspeaker\n" + "".join(f"{n}\tsame\n" for n in names))
    assert _run(root, tmp_path / "out", tiny_yaml, "--points", "0-4", "--speakers",
                str(table)) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "all 7 clips are one speaker ('same', by table)" in line
    assert not (tmp_path / "out").exists()


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


# --------------------------------------------------------------------------- joined recordings

def test_recordings_table_is_read_and_bad_tables_are_refused(tmp_path):
    table = tmp_path / "recordings.tsv"
    table.write_text("file\trecording\tpart\tnotes\nv/talk_001.mp4\ttalk\t1\tx\n"
                     "talk_000.mp4\ttalk\t0\t\n")
    assert analyze.read_recordings(table) == {"talk_001.mp4": ("talk", 1),
                                              "talk_000.mp4": ("talk", 0)}
    with pytest.raises(InputError, match="no such recordings table"):
        analyze.read_recordings(tmp_path / "missing.tsv")
    table.write_text("file\tspeaker\ntalk_000.mp4\tAda\n")
    with pytest.raises(InputError, match="columns 'file', 'recording' and 'part'"):
        analyze.read_recordings(table)
    table.write_text("file\trecording\tpart\ntalk_000.mp4\ttalk\tfirst\n")
    with pytest.raises(InputError, match="line 2: part 'first' is not an integer"):
        analyze.read_recordings(table)


def _piece(clip_id, n_frames, value, **meta):
    """A clip whose every point, landmark and audio row holds ``value``."""
    return Clip(clip_id, np.full((n_frames, 10, 6), value, np.float32),
                np.full((4 * n_frames, 26), value, np.float32),
                landmarks=np.full((n_frames, 68, 2), value, np.float32),
                meta={"source": f"/v/{clip_id}.mp4", **meta})


def test_consecutive_pieces_are_joined_in_order_up_to_the_length_asked():
    """Parts 0-4 and 6 of one recording, read out of order: 0-2 reach 120 frames and close a
    clip, 3-4 make the next, 6 (after the gap) stays alone, as does the unlisted clip."""
    parts = [4, 0, 6, 2, 1, 3]
    clips = [_piece(f"talk_{p:03d}", 50, float(p)) for p in parts] + [_piece("solo", 80, 9.0)]
    table = {f"talk_{p:03d}.mp4": ("talk", p) for p in parts}
    kept, joined = analyze.join_consecutive(clips, table, max_frames=120)
    assert joined == {"talk_000__3pieces": ["talk_000", "talk_001", "talk_002"],
                      "talk_003__2pieces": ["talk_003", "talk_004"]}
    by_id = {c.clip_id: c for c in kept}
    assert set(by_id) == {"talk_000__3pieces", "talk_003__2pieces", "talk_006", "solo"}
    first = by_id["talk_000__3pieces"]
    assert first.n_frames == 150 and first.audio_features.shape == (600, 26)
    np.testing.assert_array_equal(first.landmarks[::50, 0, 0], [0.0, 1.0, 2.0])
    np.testing.assert_array_equal(first.audio_features[::200, 0], [0.0, 1.0, 2.0])
    assert first.meta["pieces"] == joined["talk_000__3pieces"]
    assert first.meta["source"] == "/v/talk_000.mp4"
    assert by_id["talk_006"] is clips[2] and by_id["solo"] is clips[-1]
    with pytest.raises(InputError, match="recording 'talk' lists part 2 twice"):
        analyze.join_consecutive(clips, table | {"solo.mp4": ("talk", 2)}, max_frames=120)


def test_joined_pieces_share_the_first_pieces_crop():
    """The same source pixel, normalised in two pieces' different crops, is one point once
    joined; pieces without a crop are concatenated as they are."""
    from syncers.data import face
    boxes = [(800.0, 380.0, 1250.0, 830.0), (720.0, 360.0, 1230.0, 835.0)]
    pixel = np.array([1010.0, 600.0])

    def normalised(box):
        left, top, right, _ = face.crop_box(box)
        return np.array([face._to_crop_coords(v, o, right - left, 256)
                         for v, o in zip(pixel, (left, top))], np.float32)

    pieces = []
    for i, box in enumerate(boxes):
        clip = _piece(f"talk_{i:03d}", 30, 0.0, face_box=list(box), crop_size=256)
        clip.landmarks[:] = normalised(box)
        clip.keypoints[..., :2] = normalised(box)
        pieces.append(clip)
    assert not np.allclose(pieces[0].landmarks[0, 0], pieces[1].landmarks[0, 0], atol=1e-2)
    whole = analyze.join_pieces(pieces)
    np.testing.assert_allclose(whole.landmarks, np.broadcast_to(normalised(boxes[0]), (60, 68, 2)),
                               atol=1e-5)
    np.testing.assert_allclose(whole.keypoints[..., :2], whole.landmarks[:, :10], atol=1e-5)
    np.testing.assert_array_equal(whole.keypoints[..., 2:], 0.0)       # jacobians unchanged
    plain = analyze.join_pieces([_piece("a", 30, 1.0), _piece("b", 30, 2.0)])
    np.testing.assert_array_equal(plain.landmarks[:, 0, 0], [1.0] * 30 + [2.0] * 30)


def test_recordings_join_clips_before_the_folds(data, tmp_path, tiny_yaml, capsys):
    """Six 2 s pieces of one interview (and two other speakers) joined into clips of up to
    7.68 s (200 ms: 0.96 s × 8): 4 + 2 pieces; the report lists the joins; a join across
    speakers and --generated are refused."""
    root = tmp_path / "pieces"
    clip = read_clip(data, "test", "test000")
    names = [f"talk_{i:03d}" for i in range(6)] + ["Ada_000", "Bo_000"]
    for i, name in enumerate(names):
        write_clip(root, "test", name, clip.keypoints[:50] + np.float32(0.01 * i),
                   clip.audio_features[:200], meta={"source": f"/videos/{name}.mp4"})
    write_manifest(root, {"test": [(n, 50) for n in names]}, keypoint_space="test-v1",
                   features={"kind": "test"})
    table = tmp_path / "recordings.tsv"
    table.write_text("file\trecording\tpart\n" +
                     "".join(f"{n}.mp4\tinterview\t{i}\n" for i, n in enumerate(names[:6])))
    out = tmp_path / "out"
    assert _run(root, out, tiny_yaml, "--points", "0-4", "--folds", "3",
                "--recordings", str(table)) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["joined"] == {"talk_000__4pieces": names[:4], "talk_004__2pieces": names[4:6]}
    assert report["n_clips"] == 4 and report["speakers"]["n"] == 3
    assert "6 clips that are consecutive pieces of one recording (`--recordings`) are joined " \
           "into 2" in (out / "report.md").read_text()
    speakers = tmp_path / "speakers.tsv"
    speakers.write_text("file\tspeaker\n" + "".join(f"{n}.mp4\t{n}\n" for n in names))
    assert _run(root, tmp_path / "out2", tiny_yaml, "--points", "0-4", "--recordings",
                str(table), "--speakers", str(speakers)) == 2
    assert "the pieces joined into talk_000__4pieces have different speakers" in \
        capsys.readouterr().err
    assert _run(root, tmp_path / "out3", tiny_yaml, "--points", "0-4", "--recordings",
                str(table), "--generated", str(root)) == 2
    assert "--recordings: joined clips have no generated motion" in capsys.readouterr().err
