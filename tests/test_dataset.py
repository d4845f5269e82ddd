"""Clip npz + manifest format: round trip, validation, and refusal of pickles."""
import json
import re

import numpy as np
import pytest

from syncers.data import dataset
from syncers.run.errors import InputError


def make_clip(n_frames=20, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n_frames, 10, 6)).astype(np.float32),
            rng.normal(size=(4 * n_frames, 26)).astype(np.float32))


def test_round_trip(tmp_path):
    kp, feats = make_clip()
    landmarks = np.ones((20, 68, 2), np.float32)
    dataset.write_clip(tmp_path, "train", "c0", kp, feats, meta={"speaker": "a", "lag": 0.04},
                       landmarks=landmarks, samples=np.zeros(12800, np.float32))
    dataset.write_manifest(tmp_path, {"train": [("c0", 20)]}, keypoint_space="phantom-v1",
                           features={"kind": "logmel"})
    manifest = dataset.read_manifest(tmp_path)
    assert manifest.keypoint_space == "phantom-v1" and manifest.fps == 25.0
    assert manifest.clips("train") == (dataset.ClipInfo("c0", 20),)
    assert manifest.clips("test") == ()
    clip, = dataset.load_split(tmp_path, "train")
    np.testing.assert_array_equal(clip.keypoints, kp)
    np.testing.assert_array_equal(clip.audio_features, feats)
    np.testing.assert_array_equal(clip.landmarks, landmarks)
    assert clip.meta == {"speaker": "a", "lag": 0.04} and clip.n_frames == 20
    assert (tmp_path / "train" / "c0.wav").is_file()
    assert not list(tmp_path.rglob("*.partial"))


def test_missing_manifest(tmp_path):
    with pytest.raises(InputError, match=r"manifest.json: missing: not an msync dataset"):
        dataset.read_manifest(tmp_path)
    with pytest.raises(InputError, match="no such dataset directory"):
        dataset.read_manifest(tmp_path / "nope")


def test_corrupt_manifest(tmp_path):
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        dataset.read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(InputError, match="not an msync dataset manifest"):
        dataset.read_manifest(tmp_path)


@pytest.mark.parametrize("splits, message", [
    ({"train": [{"id": "../val/x", "n_frames": 20}]}, "clip id '../val/x' in split 'train' is not"),
    ({"train": [{"id": "a/b", "n_frames": 20}]}, "clip id 'a/b' in split 'train' is not"),
    ({"test": [{"id": ".hidden", "n_frames": 20}]}, "clip id '.hidden' in split 'test'"),
    ({"train": [{"id": "x\n", "n_frames": 20}]}, "clip id 'x\\n' in split 'train'"),
    ({"train": [{"id": 7, "n_frames": 20}]}, "clip id 7 in split 'train'"),
    ({"train": [{"id": "c0", "n_frames": 20}] * 2}, "clip id 'c0' is listed twice in split"),
    ({"../x": [{"id": "c0", "n_frames": 20}]}, "unknown split '../x'"),
])
def test_manifest_clip_ids_must_be_plain_names(tmp_path, splits, message):
    """A manifest cannot send readers outside its split folders (or list a clip twice)."""
    dataset.write_manifest(tmp_path, {"train": [("c0", 20)]}, keypoint_space="phantom-v1",
                           features={"kind": "logmel"})
    data = json.loads((tmp_path / "manifest.json").read_text())
    (tmp_path / "manifest.json").write_text(json.dumps(data | {"splits": splits}))
    with pytest.raises(InputError, match="manifest.json: " + re.escape(message)) as err:
        dataset.read_manifest(tmp_path)
    assert "\n" not in str(err.value)
    # the same clip id in two splits is two clips (two files): allowed
    (tmp_path / "manifest.json").write_text(json.dumps(data | {"splits": {
        "train": [{"id": "c0", "n_frames": 20}], "test": [{"id": "c0", "n_frames": 20}]}}))
    assert dataset.read_manifest(tmp_path).clips("test") == (dataset.ClipInfo("c0", 20),)


def raw_npz(path, **arrays):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


@pytest.mark.parametrize("mutate,message", [
    (lambda kp, f: (kp[:19], f), "keypoints have 19 frames but audio_features have 80"),
    (lambda kp, f: (np.where(np.arange(20)[:, None, None] == 3, np.nan, kp), f),
     "keypoints contains NaN or infinite values"),
    (lambda kp, f: (kp, np.full_like(f, np.inf)), "audio_features contains NaN or infinite"),
    (lambda kp, f: (kp[..., :4], f), r"keypoints must have shape \[·, 10, 6\]; got \[20, 10, 4\]"),
    (lambda kp, f: (kp[:, :3], f), r"keypoints must have shape \[·, 10, 6\]; got \[20, 3, 6\]"),
    (lambda kp, f: (kp.astype(np.int32), f), "keypoints must be floating point"),
])
def test_bad_clips_are_named(tmp_path, mutate, message):
    kp, feats = mutate(*make_clip())
    raw_npz(tmp_path / "train" / "bad.npz", keypoints=kp, audio_features=feats)
    with pytest.raises(InputError, match=r"bad\.npz: " + message):
        dataset.read_clip(tmp_path, "train", "bad")


def test_object_arrays_are_refused(tmp_path):
    kp, feats = make_clip()
    payload = np.array([{"a": 1}], dtype=object)
    raw_npz(tmp_path / "train" / "evil.npz", keypoints=kp, audio_features=feats, meta=payload)
    with pytest.raises(InputError, match="evil.npz: holds object arrays"):
        dataset.read_clip(tmp_path, "train", "evil")


def test_length_disagreeing_with_manifest(tmp_path):
    kp, feats = make_clip()
    dataset.write_clip(tmp_path, "test", "c1", kp, feats)
    dataset.write_manifest(tmp_path, {"test": [("c1", 25)]}, "phantom-v1", {})
    with pytest.raises(InputError, match="c1.npz: has 20 frames but the manifest says 25"):
        dataset.load_split(tmp_path, "test")


def test_not_an_npz(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "txt.npz").write_text("hello")
    with pytest.raises(InputError, match="txt.npz: not a readable npz"):
        dataset.read_clip(tmp_path, "train", "txt")


def test_writer_refuses_bad_arrays(tmp_path):
    kp, feats = make_clip()
    with pytest.raises(InputError, match="expected 4 × 20 = 80"):
        dataset.write_clip(tmp_path, "train", "c", kp, feats[:-1])
    assert not (tmp_path / "train" / "c.npz").exists()


@pytest.mark.parametrize("n", [1, 3, 10, 200])
def test_splits_cover_every_clip_in_order(n):
    splits = [dataset.split_for(i, n) for i in range(n)]
    order = {"train": 0, "val": 1, "test": 2}
    assert [order[s] for s in splits] == sorted(order[s] for s in splits)
    if n >= 3:
        assert {"train", "val", "test"} <= set(splits)
    if n == 200:
        assert splits.count("test") == 20 and splits.count("val") == 20
