"""``msync data prepare``: real mp4s into a dataset with no checkpoint (dlib landmarks, the
``landmarks-v1`` space), the videos it must refuse (corrupt, no audio, too short, no face)
without stopping, resumption, shards and splits; and the FOMM space with a random-weight FOMM
checkpoint in the official layout."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import yaml

from motion.app.cli import main
from syncers.data import dataset, landmark_space, measures
from syncers.data import prepare as prepare_app
from syncers.data.features import audio_features, feature_config, load_audio
from syncers.data.prepare import clip_id_of, clip_ids, split_of
from syncers.data.video import write_video

REAL_VIDEOS = ("WDA_KatieHill_000.mp4", "WDA_AlexandriaOcasioCortez_000.mp4")


@pytest.fixture(scope="module")
def videos(real_media, tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    for name in REAL_VIDEOS:
        shutil.copy(real_media / name, folder / name)
    (folder / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    frames = np.full((50, 64, 64, 3), 128, np.uint8)
    write_video(folder / "silent.mp4", frames)                       # no audio track
    write_video(folder / "short.mp4", frames[:20], audio=np.zeros(12800, np.float32))
    noise = np.random.default_rng(0).integers(0, 255, (75, 96, 96, 3), dtype=np.uint8)
    write_video(folder / "noface.mp4", noise, audio=np.zeros(48000, np.float32))
    return folder


def prepare(videos, out, *extra):
    return main(["data", "prepare", "--videos", str(videos), "--out", str(out), *extra])


@pytest.fixture(scope="module")
def prepared(videos, tmp_path_factory):
    out = tmp_path_factory.mktemp("ds") / "ds"
    assert prepare(videos, out, "--flip") == 0
    return out


def test_prepare_real_videos_with_no_checkpoint(videos, prepared, real_media):
    report = json.loads((prepared / "prepare_report.json").read_text())
    assert report["prepared"] == sorted(REAL_VIDEOS)
    assert set(report["skipped"]) == {"corrupt.mp4", "silent.mp4", "short.mp4", "noface.mp4"}
    assert "not a readable video" in report["skipped"]["corrupt.mp4"]
    assert report["skipped"]["silent.mp4"] == "no audio track"
    assert report["skipped"]["short.mp4"].startswith("too short: 0.80 s")
    assert report["skipped"]["noface.mp4"] == "no face found"
    assert report["frames"] == 400 and report["frames_per_second"] > 0

    manifest = dataset.read_manifest(prepared)
    assert manifest.keypoint_space == "landmarks-v1"
    for name in REAL_VIDEOS:
        video = real_media / name
        clip = dataset.read_clip(prepared, split_of(video, "speaker"), video.stem)
        assert clip.keypoints.shape == (200, 10, 6) and clip.landmarks.shape == (200, 68, 2)
        # the keypoints are the landmark-space encoding of the stored landmarks
        np.testing.assert_allclose(clip.keypoints, landmark_space.encode(clip.landmarks),
                                   rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(clip.keypoints_flipped,
                                   landmark_space.encode(landmark_space.mirror(clip.landmarks)),
                                   rtol=1e-5, atol=1e-5)
        # a real talking head: the face sits in the middle of the crop, the mouth moves
        centre = clip.landmarks.mean(axis=(0, 1))
        assert np.all(np.abs(centre) < 0.3), centre
        opening = measures.mouth_opening(clip.landmarks)
        assert opening.std() > 0.01 and opening.max() > 0.05
        expected = audio_features(load_audio(video)[:200 * 640])
        np.testing.assert_array_equal(clip.audio_features, expected)
        assert clip.meta["landmarker"] == "dlib" and clip.meta["frames_interpolated"] == 0


def test_prepare_is_resumable_and_does_not_retry_refused_videos(videos, prepared, capsys):
    before = {p: p.read_bytes() for p in prepared.rglob("*.npz")}
    assert prepare(videos, prepared) == 0
    report = json.loads((prepared / "prepare_report.json").read_text())
    assert report["already_done"] == 2 and report["prepared"] == [] and report["skipped"] == {}
    assert set(report["skipped_before"]) == {"corrupt.mp4", "silent.mp4", "short.mp4",
                                             "noface.mp4"}
    assert before == {p: p.read_bytes() for p in prepared.rglob("*.npz")}
    assert "4 refused before" in capsys.readouterr().out


def test_shards_split_the_work_and_split_forces_one_split(videos, tmp_path):
    out = tmp_path / "sharded"
    real_only = tmp_path / "real"
    real_only.mkdir()
    for name in REAL_VIDEOS:
        shutil.copy(videos / name, real_only / name)
    assert prepare(real_only, out, "--shard", "1/2", "--split", "test") == 0
    first = json.loads((out / "prepare_report.1-of-2.json").read_text())
    assert prepare(real_only, out, "--shard", "2/2", "--split", "test") == 0
    second = json.loads((out / "prepare_report.2-of-2.json").read_text())
    assert len(first["prepared"]) == len(second["prepared"]) == 1
    assert set(first["prepared"]) | set(second["prepared"]) == set(REAL_VIDEOS)
    manifest = dataset.read_manifest(out)
    assert sorted(c.clip_id for c in manifest.clips("test")) == sorted(
        clip_id_of(real_only / n) for n in REAL_VIDEOS)
    assert not manifest.clips("train") and not manifest.clips("val")


def test_speaker_folders_give_clip_ids_and_splits_by_folder(tmp_path):
    root = tmp_path / "vox"
    paths = [root / "id001" / "vidA" / "00001.mp4", root / "id001" / "vidB" / "00002.mp4",
             root / "id002" / "vidC" / "00001.mp4"]
    assert [clip_id_of(p, root) for p in paths] == [
        "id001__vidA__00001", "id001__vidB__00002", "id002__vidC__00001"]
    # every clip of a speaker folder lands in one split
    assert split_of(paths[0], "speaker", root) == split_of(paths[1], "speaker", root)
    table = {"00001.mp4": "alice"}
    assert split_of(tmp_path / "00001.mp4", "speaker", None, table) == \
        split_of(tmp_path / "alice_7.mp4", "speaker")


def test_clip_ids_are_unique_by_construction(tmp_path):
    names = ["same.mp4", "same.mov", "a b.mp4", "a_b.mp4", "same-2.mp4", "x.mkv"]
    ids = clip_ids([tmp_path / n for n in names], tmp_path)
    assert {p.name: i for p, i in ids.items()} == {
        "a b.mp4": "a_b", "a_b.mp4": "a_b-2", "same-2.mp4": "same-2", "same.mov": "same",
        "same.mp4": "same-3", "x.mkv": "x"}
    assert ids == clip_ids([tmp_path / n for n in reversed(names)], tmp_path)   # any order


class _FakeWorker:
    """Writes a small clip per video at once (no decoding, no dlib): the id plumbing only."""

    def __init__(self, options):
        self.options = options

    def prepare(self, video, out, split, clip_id):
        rng = np.random.default_rng(len(video.name))
        dataset.write_clip(out, split, clip_id, rng.normal(size=(60, 10, 6)),
                           rng.normal(size=(240, 26)),
                           meta={"source": str(video), "keypoint_space": "landmarks-v1"})
        return {"split": split, "n_frames": 60, "frames_interpolated": 0, "seconds": 0.0}


@pytest.fixture
def fake_worker(monkeypatch):
    monkeypatch.setattr(prepare_app, "_Worker", _FakeWorker)
    monkeypatch.setattr(prepare_app.landmarker, "check_available", lambda: None)


def test_colliding_video_names_make_distinct_clips(tmp_path, fake_worker):
    folder = tmp_path / "v"
    folder.mkdir()
    names = ["same.mp4", "same.mov", "a b.mp4", "a_b.mp4"]
    for name in names:
        (folder / name).write_bytes(b"video")
    assert prepare(folder, tmp_path / "out", "--split", "train") == 0
    report = json.loads((tmp_path / "out" / "prepare_report.json").read_text())
    clips = dataset.read_manifest(tmp_path / "out").clips("train")
    assert len(report["prepared"]) == report["clips"]["train"] == len(clips) == 4
    assert sorted(c.clip_id for c in clips) == ["a_b", "a_b-2", "same", "same-2"]


def test_preparing_into_a_dataset_of_another_kind_is_refused(tmp_path, capsys, fake_worker):
    folder = tmp_path / "v"
    folder.mkdir()
    (folder / "a.mp4").write_bytes(b"video")
    for name, space, features in (("phantom", "phantom-v1", feature_config("logmel")),
                                  ("mfcc", "landmarks-v1", feature_config("mfcc"))):
        out = tmp_path / name
        dataset.write_manifest(out, {}, keypoint_space=space, features=features)
        before = sorted(out.rglob("*"))
        assert prepare(folder, out) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"{out / 'manifest.json'}: holds" in err, err
        assert ("phantom-v1 clips" if name == "phantom" else "feature kind 'mfcc'") in err
        assert sorted(out.rglob("*")) == before                     # nothing written
    # no manifest yet (a shard still running): an existing clip's meta says what it holds
    out = tmp_path / "shard"
    dataset.write_clip(out, "train", "c", np.zeros((60, 10, 6)), np.zeros((240, 26)),
                       meta={"keypoint_space": "fomm-vox256"})
    assert prepare(folder, out) == 2
    assert "holds fomm-vox256 clips; this prepare makes landmarks-v1" in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (("--shard", "3/2"), "K/N needs 1 <= K <= N"),
    (("--shard", "x"), "expected K/N"),
    (("--fomm-checkpoint", "none.pth.tar"), "none.pth.tar: no such FOMM checkpoint"),
    (("--speakers", "missing.tsv"), "missing.tsv: no such speaker table"),
])
def test_bad_options_are_one_line(tmp_path, capsys, extra, message):
    folder = tmp_path / "v"
    folder.mkdir()
    (folder / "a.mp4").write_bytes(b"x")
    try:
        code = prepare(folder, tmp_path / "o", *extra)
    except SystemExit as usage:                # argparse's own one-line usage errors
        code = usage.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "o").exists()


def test_a_folder_with_no_videos_is_one_line(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert prepare(empty, tmp_path / "o") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no videos" in err
    assert prepare(tmp_path / "missing", tmp_path / "o") == 2
    assert "no such directory of videos" in capsys.readouterr().err


def test_face_alignment_without_weights_says_where_to_put_them(tmp_path, capsys, monkeypatch):
    pytest.importorskip("face_alignment")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    folder = tmp_path / "v"
    folder.mkdir()
    (folder / "a.mp4").write_bytes(b"x")
    assert prepare(folder, tmp_path / "o", "--landmarker", "face-alignment") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "2DFAN4-11f355bf06.pth.tar: face-alignment weights not found" in err


def test_prepare_fomm_space_with_a_checkpoint(videos, tmp_path, real_media):
    torch = pytest.importorskip("torch")
    import fomm_reference as ref
    torch.set_num_threads(1)
    models = ref.random_models(ref.SMALL_MODEL_PARAMS, True, seed=3)
    ref.save_checkpoint(tmp_path / "small.pth.tar", *models, legacy=True)
    (tmp_path / "small.yaml").write_text(yaml.safe_dump({"model_params": ref.SMALL_MODEL_PARAMS}))
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(videos / REAL_VIDEOS[0], one / REAL_VIDEOS[0])
    out = tmp_path / "fomm-ds"
    assert prepare(one, out, "--fomm-checkpoint", str(tmp_path / "small.pth.tar"),
                   "--fomm-config", str(tmp_path / "small.yaml"), "--flip") == 0
    manifest = dataset.read_manifest(out)
    assert manifest.keypoint_space == "fomm-vox256"
    video = real_media / REAL_VIDEOS[0]
    clip = dataset.read_clip(out, split_of(video, "speaker"), video.stem)
    assert clip.keypoints.shape == (200, 10, 6) and clip.keypoints_flipped.shape == (200, 10, 6)
    assert np.abs(clip.keypoints[..., :2]).max() <= 1.0          # heatmap expectations
    assert clip.keypoints[..., :2].std(axis=0).mean() > 1e-4
    assert not np.allclose(clip.keypoints, clip.keypoints_flipped)
    assert clip.landmarks.shape == (200, 68, 2)                   # landmarks in every space


class _RefusingWorker(_FakeWorker):
    """Refuses every video, as prepare refuses one with no face or no audio."""

    def prepare(self, video, out, split, clip_id):
        raise prepare_app.Skip("no face found" if "face" in video.name else "no audio track")


def test_no_usable_video_is_one_line_naming_the_reasons(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(prepare_app, "_Worker", _RefusingWorker)
    monkeypatch.setattr(prepare_app.landmarker, "check_available", lambda: None)
    folder = tmp_path / "v"
    folder.mkdir()
    for name in ("noface.mp4", "face2.mp4", "silent.mp4"):
        (folder / name).write_bytes(b"video")
    out = tmp_path / "out"
    assert prepare(folder, out) == 2
    lines = [line for line in capsys.readouterr().err.splitlines()
             if not line.startswith("prepare:")]                     # the progress bar's
    err = "\n".join(lines)
    assert len(lines) == 1 and err.startswith("msync: error: "), err
    assert "no usable clip: 3 video(s) refused" in err
    assert "2 × no face found (e.g. face2.mp4)" in err and "1 × no audio track" in err, err
    report = json.loads((out / "prepare_report.json").read_text())   # the report is written
    assert set(report["skipped"]) == {"noface.mp4", "face2.mp4", "silent.mp4"}
    assert prepare(folder, out) == 2                                # and again, resumed
    assert "3 video(s) refused" in capsys.readouterr().err
