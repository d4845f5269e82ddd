"""``msync data prepare`` on the real mp4s, with a random-weight FOMM checkpoint in the official
layout, plus the videos it must skip (corrupt, no audio, too short) without stopping."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import yaml

torch = pytest.importorskip("torch")

import fomm_reference as ref  # noqa: E402
from motion.app.cli import main  # noqa: E402
from motion.app.prepare import split_of  # noqa: E402
from syncers.data import dataset  # noqa: E402
from syncers.data.features import audio_features, load_audio  # noqa: E402

REAL_VIDEOS = ("WDA_KatieHill_000.mp4", "WDA_AlexandriaOcasioCortez_000.mp4")


@pytest.fixture(scope="module")
def fomm_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fomm")
    torch.set_num_threads(1)
    models = ref.random_models(ref.SMALL_MODEL_PARAMS, True, seed=3)
    ref.save_checkpoint(folder / "small.pth.tar", *models, legacy=True)
    (folder / "small.yaml").write_text(yaml.safe_dump({"model_params": ref.SMALL_MODEL_PARAMS}))
    return folder / "small.pth.tar", folder / "small.yaml"


@pytest.fixture(scope="module")
def videos(real_media, tmp_path_factory):
    from render.video import write_video
    folder = tmp_path_factory.mktemp("videos")
    for name in REAL_VIDEOS:
        shutil.copy(real_media / name, folder / name)
    (folder / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    frames = np.full((50, 64, 64, 3), 128, np.uint8)
    write_video(folder / "silent.mp4", frames)                       # no audio track
    write_video(folder / "short.mp4", frames[:20], audio=np.zeros(12800, np.float32))
    return folder


def run_prepare(videos, out, fomm_files, *extra):
    ckpt, config = fomm_files
    return main(["data", "prepare", "--videos", str(videos), "--out", str(out),
                 "--fomm-checkpoint", str(ckpt), "--fomm-config", str(config), *extra])


def test_prepare_real_videos(videos, fomm_files, tmp_path, real_media, capsys):
    out = tmp_path / "ds"
    assert run_prepare(videos, out, fomm_files, "--flip") == 0
    report = json.loads((out / "prepare_report.json").read_text())
    assert report["prepared"] == sorted(REAL_VIDEOS)
    assert set(report["skipped"]) == {"corrupt.mp4", "silent.mp4", "short.mp4"}
    assert "not a readable video" in report["skipped"]["corrupt.mp4"]
    assert report["skipped"]["silent.mp4"] == "no audio track"
    assert report["skipped"]["short.mp4"].startswith("too short: 0.80 s")
    printed = capsys.readouterr().out
    assert "skipped 3" in printed and "skipped silent.mp4: no audio track" in printed

    manifest = dataset.read_manifest(out)
    assert manifest.keypoint_space == "fomm-vox256"
    for name in REAL_VIDEOS:
        video = real_media / name
        split = split_of(video, "speaker")
        clip = dataset.read_clip(out, split, video.stem)
        assert clip.keypoints.shape == (200, 10, 6) and clip.keypoints_flipped.shape == (200, 10, 6)
        assert np.abs(clip.keypoints[..., :2]).max() <= 1.0          # heatmap expectations
        # keypoints move over the clip (a real talking head), and the flip changes them
        assert clip.keypoints[..., :2].std(axis=0).mean() > 1e-4
        assert not np.allclose(clip.keypoints, clip.keypoints_flipped)
        expected = audio_features(load_audio(video)[:200 * 640])
        np.testing.assert_array_equal(clip.audio_features, expected)
        box = clip.meta["face_box"]
        assert 0 <= box[0] < box[2] <= 512 and 0 <= box[1] < box[3] <= 512

    # Resumable: a second run redoes nothing and keeps the clips byte for byte.
    before = {p: p.read_bytes() for p in out.rglob("*.npz")}
    assert run_prepare(videos, out, fomm_files) == 0
    report = json.loads((out / "prepare_report.json").read_text())
    assert report["already_done"] == 2 and report["prepared"] == []
    assert before == {p: p.read_bytes() for p in out.rglob("*.npz")}


def test_prepare_bad_inputs(tmp_path, fomm_files, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run_prepare(empty, tmp_path / "o", fomm_files) == 2
    assert "no videos" in capsys.readouterr().err
    (empty / "a.mp4").write_text("not a video")
    assert main(["data", "prepare", "--videos", str(empty), "--out", str(tmp_path / "o")]) == 2
    assert "needs --fomm-checkpoint" in capsys.readouterr().err
    assert main(["data", "prepare", "--videos", str(empty), "--out", str(tmp_path / "o"),
                 "--fomm-checkpoint", str(tmp_path / "none.pth.tar")]) == 2
    assert "none.pth.tar: no such FOMM checkpoint" in capsys.readouterr().err


def test_landmarks_without_weights_say_where_to_put_them(tmp_path, fomm_files, capsys,
                                                        monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    folder = tmp_path / "v"
    folder.mkdir()
    (folder / "a.mp4").write_bytes(b"x")
    assert run_prepare(folder, tmp_path / "o", fomm_files, "--landmarks") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "2DFAN4-11f355bf06.pth.tar: face-alignment weights not found" in err
