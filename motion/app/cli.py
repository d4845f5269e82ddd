"""The ``msync`` command line (docs/design.md, "CLI contract").

This module only parses arguments and maps outcomes to exit codes; every command's work lives in
the module named for it and is imported when the command runs, so ``msync --help`` stays fast.

Exit codes: 0 success; 2 bad input (one line ``path: problem`` on stderr, no traceback);
1 internal error (a one-line summary, the traceback only with ``--debug``).
"""
from __future__ import annotations

import argparse
import errno
import importlib
import sys
import textwrap
import traceback
from typing import Callable, Sequence

from syncers.run import compile_cache
from syncers.run.errors import InputError
from syncers.run.outputs import interrupt_on_sigterm


def _command(target: str, landmarks: bool = False) -> Callable[[argparse.Namespace], None]:
    """A handler calling ``module:function(args)``. The module is imported when its command
    runs, not here, so that ``msync --help`` does not load JAX, Flax and the models.
    ``landmarks``: the command finds a photo's landmarks, so dlib's models load in the
    background while the module imports."""
    module_name, function_name = target.split(":")

    def handler(args: argparse.Namespace) -> None:
        if landmarks:
            # here, not at the top: the landmarker would load numpy into `msync --help`
            from syncers.data import landmarks as landmarker
            landmarker.preload()
        if sys.stderr.isatty():
            # Loading JAX, the models and the command takes seconds before the command prints
            # anything; on a terminal, say so at once (a log keeps its lines for results,
            # warnings and errors).
            print("msync: loading JAX and the models...", file=sys.stderr, flush=True)
        getattr(importlib.import_module(module_name), function_name)(args)

    handler.target = target
    return handler


def _coupling(text: str) -> dict[str, float]:
    """Parse ``head=1,lips=0`` into ``{"head": 1.0, "lips": 0.0}``."""
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or key not in ("head", "lips"):
            raise argparse.ArgumentTypeError(f"expected head=F,lips=F; got {text!r}")
        try:
            out[key] = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{key} must be a number; got {value!r}") from None
    return out


def _levels(text: str) -> tuple[int, ...]:
    try:
        levels = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected levels like 1,2,3,4; got {text!r}") from None
    if not levels or any(level < 1 for level in levels):
        raise argparse.ArgumentTypeError(f"levels start at 1; got {text!r}")
    return levels


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number; got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number; got {text!r}")
    return value


def _clip_frames(text: str) -> int | None:
    return None if text == "auto" else _positive_int(text)


def _shard(text: str) -> tuple[int, int]:
    part, sep, total = text.partition("/")
    try:
        k, n = int(part), int(total)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected K/N, e.g. 3/8; got {text!r}") from None
    if not sep or not 1 <= k <= n:
        raise argparse.ArgumentTypeError(f"K/N needs 1 <= K <= N; got {text!r}")
    return k, n


def _distributed_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--distributed", action="store_true",
        help="multi-host training: start jax.distributed first (SLURM, Open MPI and cloud TPU "
             "are detected; elsewhere set JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, "
             "JAX_PROCESS_ID); only process 0 writes the run's files")


def _set_flag(parser: argparse.ArgumentParser, example: str) -> None:
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help=f"override one key of the --config YAML, e.g. {example}; the "
                             "value is read as YAML; repeatable; an unknown key or a value "
                             "outside the key's range is refused before any work")


class _Formatter(argparse.HelpFormatter):
    """Wraps descriptions and option help to the terminal, but keeps the line breaks of text
    that has them and never wraps an indented line: the examples stay one command a line, so
    they can be copied whole."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=30)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return "\n".join(line if line.startswith(" ") else
                         textwrap.fill(line, width, initial_indent=indent,
                                       subsequent_indent=indent)
                         for line in text.splitlines())


def _examples(*lines: str) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


class _Parser(argparse.ArgumentParser):
    # argparse's own exit code for usage errors is already 2; keep its message to one line.
    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


# The renderers of ``render.renderer`` (not imported: ``msync --help`` loads no JAX); streaming
# draws one frame at a time with the weight-free two.
RENDERERS = ("mesh", "warp", "fomm")
STREAM_RENDERERS = ("mesh", "warp")
# The ranges of ``motion.talking_head.GenerationOptions.validate``, which checks them.
_MOTION_SCALE_HELP = "1 as trained (default), 0 none; 0-2 is the safe range (a warning " \
                     "outside it), 10 the limit"


def add_generation_options(parser: argparse.ArgumentParser, renderers: Sequence[str]) -> None:
    """The options ``msync generate`` and ``msync stream`` share (``motion.talking_head.
    GenerationOptions``; ``motion.app.generate.options_from_args`` reads them back)."""
    group = parser.add_argument_group("generation (the same for generate and stream)")
    group.add_argument("--model", metavar="RUN",
                       help="a generator: a run of msync train generator, its RUN/model, or a "
                            "converted release (default: the bundled demo model)")
    kinds = {"mesh": "mesh (landmark-space models, the default for them: a triangle mesh over "
                     "the face with a painted mouth interior)",
             "warp": "warp (a weight-free first-order warp; the default for phantom models)",
             "fomm": "fomm (needs --fomm-checkpoint)"}
    group.add_argument("--renderer", choices=tuple(renderers),
                       help="how frames are drawn: " + ", ".join(kinds[k] for k in renderers))
    group.add_argument("--head-scale", type=float, default=1.0, metavar="F",
                       help="scale of head motion (the 800/1600 ms branches): "
                            + _MOTION_SCALE_HELP)
    group.add_argument("--lip-scale", type=float, default=1.0, metavar="F",
                       help="scale of lip motion (the 200 ms branch and the model's "
                            "mouth): " + _MOTION_SCALE_HELP)
    group.add_argument("--mouth", metavar="{content,loudness}",
                       help="the mouth added to the generated lips: content (read from what is "
                            "said and how: closes for p/b/m, rests in pauses, as wide in quiet "
                            "speech as in loud) or loudness (opens with the loudness, the "
                            "earlier mouth; kept to compare); default: content when the model "
                            "has a lip model (msync train lips), else loudness")

    group.add_argument("--audio-normalization", metavar="{corpus,none}",
                       help="match the audio features to the model's training corpus "
                            "(default: corpus when the model records its statistics)")
    group.add_argument("--drift-window", type=float, metavar="SECONDS",
                       help="remove motion slower than this window, 0-600 s (0 = off; default: "
                            "the model's drift_window_s, else 0); a stream waits half of it "
                            "longer")
    group.add_argument("--no-crop", action="store_true",
                       help="animate the centre square of the image when no face is found "
                            "(paintings, cartoons); the face is assumed to fill its middle half")
    group.add_argument("--crop-scale", type=float, default=1.8, metavar="F",
                       help="side of the square crop over the face box's side, 1.2 to 4 "
                            "(default %(default)s: the whole head with some margin)")
    group.add_argument("--size", type=int, choices=(256, 512), default=256,
                       help="output frames are SIZE x SIZE pixels (default %(default)s; the "
                            "FOMM renderer draws 256 and is upsampled to 512)")
    group.add_argument("--blink-seed", type=int, default=0, metavar="K",
                       help="seed of the added spontaneous blinks (landmark-space models, "
                            "generated motion; about 15 a minute; default %(default)s)")
    group.add_argument("--no-blinks", action="store_true",
                       help="add no blinks to the generated motion")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="msync", description="MS-Sync talking heads in JAX/Flax: one face image and speech "
                                  "-> a talking-head video; train, evaluate and analyse the "
                                  "models. `msync COMMAND --help` describes each command.",
        epilog=_examples("msync generate --out hello.mp4            # bundled face, speech "
                         "and model",
                         "msync generate --image me.jpg --audio speech.wav --out me.mp4",
                         "msync demo --out demo/                     # the whole pipeline, "
                         "then open demo/index.html"))
    parser.add_argument("--debug", action="store_true",
                        help="print the traceback of any error (for bug reports)")
    parser.add_argument("--no-cache", action="store_true",
                        help="compile every program again instead of reusing those of earlier "
                             "runs (also MSYNC_NO_COMPILE_CACHE=1)")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser,
                                     metavar="COMMAND")

    for add_command in (_data_commands, _train_commands, _generate_command, _evaluate_command,
                        _analyze_command, _demo_command, _motion_commands, _stream_command,
                        _ui_command, _render_commands):
        add_command(commands)
    return parser


def _data_commands(commands) -> None:
    """``msync data``: synth, prepare."""
    data = commands.add_parser("data", help="make datasets (synth, prepare)",
                               description="Make datasets: a synthetic phantom corpus or one "
                                           "prepared from real videos.").add_subparsers(
        dest="data_command", required=True, parser_class=_Parser, metavar="SUBCOMMAND")
    synth = data.add_parser(
        "synth", help="synthesise a phantom corpus with known speech/motion coupling",
        description="Synthesise a phantom corpus: seeded synthetic talking heads (keypoints "
                    "and speech) whose lips and head follow the speech by construction, split "
                    "80/10/10 into train/val/test. The test bed of every other command.",
        epilog=_examples("msync data synth --out runs/phantom",
                         "msync data synth --out runs/control --coupling head=0   # negative "
                         "control",
                         "msync data synth --out runs/long --clips 40 --seconds 60"))
    synth.add_argument("--out", required=True, metavar="DIR", help="dataset directory to write")
    synth.add_argument("--clips", type=_positive_int, default=200, metavar="N",
                       help="number of clips, 1 to 100000 (default %(default)s; the demo needs "
                            "at least 20 for its splits)")
    synth.add_argument("--seconds", type=_positive_float, default=8.0, metavar="S",
                       help="length of each clip in seconds, 1.6 to 3600 (default %(default)s; "
                            "evaluate needs 8 s clips, its long-generation check 60 s)")
    synth.add_argument("--seed", type=int, default=0, metavar="K",
                       help="random seed, >= 0; the same seed gives the same bytes (default "
                            "%(default)s)")
    synth.add_argument("--coupling", type=_coupling, default={}, metavar="head=G,lips=G",
                       help="how much of the head and lip motion follows the speech, finite "
                            "gains (default head=1,lips=1: fully coupled; head=0 is the "
                            "negative control)")
    synth.add_argument("--features", choices=("logmel", "mfcc"), default="logmel",
                       help="audio features stored with the clips: 26 log-mel energies or 26 "
                            "MFCCs at 100 Hz (default %(default)s)")
    synth.set_defaults(handler=_command("motion.app.synth:synth_command"))
    prepare = data.add_parser(
        "prepare", help="turn real talking-head videos into a dataset",
        description="Turn real talking-head videos into a dataset: 25 fps frames, 16 kHz audio, "
                    "one face crop per clip, 68 landmarks tracked by dlib and their 10 "
                    "first-order keypoints (landmarks-v1), log-mel features. Resumable: rerun "
                    "the same command to continue. Videos it cannot use are listed with the "
                    "reason in OUT/prepare_report.json.",
        epilog=_examples("msync data prepare --videos videos/ --out ds/",
                         "msync data prepare --videos vox/ --out ds/ --flip --workers 2",
                         "msync data prepare --videos held_out/ --out ds/ --split test"))
    prepare.add_argument("--videos", required=True, metavar="DIR",
                         help="folder of videos (or of speaker folders holding them), any "
                              "format ffmpeg reads")
    prepare.add_argument("--out", required=True, metavar="DIR",
                         help="dataset directory to write (or to continue)")
    prepare.add_argument("--fomm-checkpoint", metavar="PTH",
                         help="keypoints from FOMM's detector (fomm-vox256) instead of the "
                              "landmark keypoints (landmarks-v1, the default: no weights needed)")
    prepare.add_argument("--fomm-config", metavar="YAML",
                         help="FOMM YAML for --fomm-checkpoint (default "
                              "configs/render/vox-256.yaml)")
    prepare.add_argument("--landmarker", choices=("dlib", "face-alignment"), default="dlib",
                         help="68-point landmarks: dlib (offline, the default) or face-alignment "
                              "(needs msync[torch] and its weights)")
    prepare.add_argument("--flip", action="store_true",
                         help="also store keypoints of the horizontally flipped video (the "
                              "generator's flip augmentation)")
    prepare.add_argument("--split-by", choices=("speaker", "clip"), default="speaker",
                         help="how videos are split into train/val/test (80/10/10): by speaker "
                              "(--speakers, else the name up to its last '_', else the speaker "
                              "folder) or by clip (default %(default)s)")
    prepare.add_argument("--speakers", metavar="TABLE.tsv",
                         help="tab-separated 'file' and 'speaker' columns: split by these speakers")
    prepare.add_argument("--split", choices=("train", "val", "test"),
                         help="put every clip into this split (an evaluation set)")
    prepare.add_argument("--shard", type=_shard, default=(1, 1), metavar="K/N",
                         help="prepare only every N-th video from the K-th, 1 <= K <= N "
                              "(several machines; default 1/1: all)")
    prepare.add_argument("--min-seconds", type=_positive_float, default=2.0, metavar="S",
                         help="shortest video kept, seconds > 0 (default %(default)s)")
    prepare.add_argument("--workers", type=_positive_int, default=1, metavar="N",
                         help="videos prepared in parallel processes, >= 1 (default %(default)s)")
    prepare.set_defaults(handler=_command("motion.app.prepare:prepare_command"))


def _train_commands(commands) -> None:
    """``msync train``: syncers, generator, lips, articulation, expression."""
    train = commands.add_parser("train", help="train the syncers, then the generator",
                                description="Train the syncer pyramid (stage 1), then the "
                                            "generator against it (stage 2).").add_subparsers(
        dest="train_command", required=True, parser_class=_Parser, metavar="SUBCOMMAND")
    syncers = train.add_parser(
        "syncers", help="stage 1: the syncer pyramid (200-1600 ms)",
        description="Stage 1: train one audio/motion syncer per time scale (200, 400, 800, "
                    "1600 ms), one level after the other. RUN holds config.yaml, run.json, "
                    "metrics.jsonl and checkpoints; rerunning the same command resumes.",
        epilog=_examples("msync train syncers --data runs/phantom --out runs/syncers "
                         "--config configs/syncers-small.yaml",
                         "msync train syncers --data ds/ --out runs/syncers --set "
                         "train.steps=5000 --levels 1,2"))
    syncers.add_argument("--data", required=True, metavar="DIR",
                         help="a dataset (msync data synth or prepare); its train split is used")
    syncers.add_argument("--out", required=True, metavar="RUN",
                         help="run directory to write (or to resume)")
    syncers.add_argument("--config", metavar="YAML",
                         help="training config (default configs/syncers.yaml, the paper's "
                              "sizes; configs/syncers-small.yaml trains in minutes on a CPU)")
    _set_flag(syncers, "train.steps=500")
    syncers.add_argument("--levels", type=_levels, metavar="1,2,3,4",
                         help="pyramid levels to train, each >= 1 (default: the config's "
                              "train.levels, all four)")
    _distributed_flag(syncers)
    syncers.set_defaults(handler=_command("motion.app.train:train_syncers_command"))
    generator = train.add_parser(
        "generator", help="stage 2: the multi-scale generator",
        description="Stage 2: train the generator G against the frozen syncers (eq. 16: "
                    "multi-scale sync, adversarial and reconstruction losses). RUN/model is "
                    "the exported model that generate and evaluate --model read; rerunning the "
                    "same command resumes.",
        epilog=_examples("msync train generator --data runs/phantom --syncers runs/syncers "
                         "--out runs/generator --config configs/generator-small.yaml",
                         "msync train generator --data ds/ --syncers runs/syncers --out "
                         "runs/generator --set train.steps=20000"))
    generator.add_argument("--data", required=True, metavar="DIR",
                           help="a dataset of the syncers' keypoint space and audio features")
    generator.add_argument("--syncers", required=True, metavar="RUN",
                           help="a run of msync train syncers (all four levels trained)")
    generator.add_argument("--out", required=True, metavar="RUN",
                           help="run directory to write (or to resume)")
    generator.add_argument("--config", metavar="YAML",
                           help="training config (default configs/generator.yaml, the paper's "
                                "sizes; configs/generator-small.yaml for a CPU)")
    generator.add_argument("--init-from", metavar="MODEL",
                           help="start G from this saved generator's parameters (same sizes; "
                                "D fresh): e.g. the bundled model for its low-latency twin "
                                "(--set model.fpn_lookahead=5)")
    _set_flag(generator, "train.steps=500")
    _distributed_flag(generator)
    generator.set_defaults(handler=_command("motion.app.train:train_generator_command"))
    articulation = train.add_parser(
        "articulation", help="after the generator: the mouth's speech-driven articulation",
        description="Fit the articulation of a landmarks-v1 generator (motion/articulation.py: "
                    "a ridge map from 320 ms of loudness to the mouth's shape in the head's frame, "
                    "which generate adds to the generated lips) on a prepared dataset's train "
                    "split, the ridge weight chosen on its val split, and store it in the "
                    "model's model.json. Takes seconds; rerunning replaces it.",
        epilog=_examples("msync train articulation --data ds/ --model runs/generator"))
    articulation.add_argument("--data", required=True, metavar="DIR",
                              help="a landmarks-v1 dataset (msync data prepare), with val clips")
    articulation.add_argument("--model", required=True, metavar="RUN",
                              help="the generator to add it to: a training run or its model "
                                   "directory")
    articulation.set_defaults(handler=_command("motion.app.train:train_articulation_command"))
    lip_model = train.add_parser(
        "lips", help="after the generator: the mouth from what is said (the default mouth)",
        description="Fit the lip model of a landmarks-v1 generator (motion/lips.py: a ridge "
                    "map from 440 ms of visemes and relative loudness to the mouth's shapes in "
                    "the head's frame, sized as real mouths move, which generate adds to the "
                    "generated lips) on a prepared dataset's train split, the ridge weight "
                    "chosen on its val split, and store it in the model's model.json. Reads "
                    "each clip's wav (phone decoding: about a second per minute of speech); "
                    "rerunning replaces it.",
        epilog=_examples("msync train lips --data ds/ --model runs/generator"))
    lip_model.add_argument("--data", required=True, metavar="DIR",
                           help="a landmarks-v1 dataset (msync data prepare) with its wavs and "
                                "val clips")
    lip_model.add_argument("--model", required=True, metavar="RUN",
                           help="the generator to add it to: a training run or its model "
                                "directory")
    lip_model.add_argument("--after", type=int, default=4, metavar="N",
                           help="frames of speech after a frame its window reads (default "
                                "%(default)s; 2 for a low-latency model)")
    lip_model.add_argument("--content-lookahead", type=int, default=12, metavar="N",
                           help="frames of look-ahead the phone decoder labels a frame with "
                                "(default %(default)s; 3 for a low-latency model); a frame's "
                                "mouth reads max(after + this, 2·after) frames ahead")
    lip_model.set_defaults(handler=_command("motion.app.train:train_lips_command"))
    face_space = train.add_parser(
        "expression", help="after the generator: the span of real faces' motion",
        description="Fit the expression space of a landmarks-v1 generator (motion/expression.py: "
                    "the directions of the keypoints' non-rigid motion in the head's frame that "
                    "hold most of it on a prepared dataset's train split, mirrored copies "
                    "included), which generate keeps the generated faces' motion within, and "
                    "store it in the model's model.json. Takes seconds; rerunning replaces it.",
        epilog=_examples("msync train expression --data ds/ --model runs/generator"))
    face_space.add_argument("--data", required=True, metavar="DIR",
                            help="a landmarks-v1 dataset (msync data prepare) with val clips")
    face_space.add_argument("--model", required=True, metavar="RUN",
                            help="the generator to add it to: a training run or its model "
                                 "directory")
    face_space.add_argument("--variance", type=float, default=0.9, metavar="F",
                            help="the share of the training faces' upper-face (brows, eyes, "
                                 "nose) non-rigid motion the space holds, 0.5 to 1 (default "
                                 "%(default)s)")
    face_space.add_argument("--lower-variance", type=float,
                            default=1.0, metavar="F",
                            help="the same for the lower face (mouth and jaw), 0.5 to 1, or 0: "
                                 "leave it as generated (default %(default)s)")
    face_space.add_argument("--no-calibration", dest="calibration", action="store_false",
                            help="keep the generator's sizes of the motion (by default the "
                                 "generator is run on the train clips and each direction's "
                                 "sizes are carried onto the recorded faces')")
    face_space.set_defaults(handler=_command("motion.app.train:train_expression_command"))


def _generate_command(commands) -> None:
    """``msync generate``."""
    generate = commands.add_parser(
        "generate", help="one face image + speech -> a talking-head video",
        description="One face image and speech -> a talking-head mp4 (25 fps, H.264, the "
                    "speech as AAC). Without --image it animates the bundled portrait "
                    "(scikit-image's astronaut photograph), without --audio it speaks the "
                    "bundled six seconds of speech, without --model it uses the bundled demo "
                    "model (trained on 23 minutes of real talking-head clips; its model card "
                    "is motion/assets/README.md). The output is a square crop "
                    "around the head (--crop-scale times the face's size, --size pixels).",
        epilog=_examples("msync generate --out hello.mp4",
                         "msync generate --image me.jpg --audio speech.wav --out me.mp4",
                         "msync generate --image me.jpg --audio speech.wav --model runs/generator "
                         "--out me.mp4 --head-scale 1.5 --size 512"))
    generate.add_argument("--image", metavar="IMG",
                          help="the face to animate: any image PIL reads, up to 50 megapixels "
                               "(default: the bundled astronaut portrait)")
    generate.add_argument("--audio", metavar="FILE",
                          help="the speech: any audio or video file ffmpeg reads, at least "
                               "0.5 s, 4-768 kHz (default: the bundled six seconds of speech)")
    generate.add_argument("--out", required=True, metavar="MP4", help="the video to write")
    generate.add_argument("--fomm-checkpoint", metavar="PTH",
                          help="FOMM weights (.pth.tar or a msync render convert directory): "
                               "needed for models in FOMM's keypoint space")
    generate.add_argument("--keypoints", metavar="NPZ",
                          help="render these keypoints instead of generating them: an npz "
                               "with keypoints [T, 10, 6] in the model's keypoint space (a "
                               "dataset clip, e.g. DATA/test/<clip>.npz with --audio "
                               "DATA/test/<clip>.wav); their motion from their first frame "
                               "moves the source face, which the model only names the space of")
    generate.add_argument("--keypoints-out", metavar="NPZ",
                          help="also save the generated keypoints [T, 10, 6], fps and "
                               "keypoint_space")
    add_generation_options(generate, RENDERERS)
    generate.add_argument("--full-frame", action="store_true",
                          help="put the animated head back into the whole photo (the photo's "
                               "size, cut to even sides), blended into it along the crop's "
                               "sides; the photo's own pixels elsewhere")
    generate.set_defaults(handler=_command("motion.app.generate:generate_command", landmarks=True))


def _evaluate_command(commands) -> None:
    """``msync evaluate``."""
    evaluate = commands.add_parser(
        "evaluate", help="multi-scale sync metrics (and a generator's long rollouts)",
        description="Multi-scale sync metrics of a split, per level: mean |AV-Off| (frames; 0 = "
                    "in sync), AV-Conf and AVS_u of ground-truth and random pairs. With --model "
                    "also the generator's sequences (AVS_m, AVS_v, L_rec, speed ratios), its "
                    "drift over 60 s and, on clips of at least 60 s, the long-generation "
                    "figures, which are also recorded beside the model for generate, and on "
                    "landmarks-v1 data its mouth against the recording (--against). Writes "
                    "OUT/metrics.json and OUT/metrics.md.",
        epilog=_examples("msync evaluate --data runs/phantom --syncers runs/syncers --out "
                         "runs/eval",
                         "msync evaluate --data runs/phantom --syncers runs/syncers --model "
                         "runs/generator --out runs/eval-generator"))
    evaluate.add_argument("--data", required=True, metavar="DIR",
                          help="a dataset (msync data synth or prepare)")
    evaluate.add_argument("--syncers", required=True, metavar="RUN",
                          help="a run of msync train syncers (the same keypoint space and audio "
                               "features as the data)")
    evaluate.add_argument("--out", required=True, metavar="DIR",
                          help="folder for metrics.json, metrics.md (and long_horizon.png)")
    evaluate.add_argument("--model", metavar="RUN",
                          help="also score this generator's sequences, each generated from its "
                               "clip's first frame and audio")
    evaluate.add_argument("--split", default="test", metavar="SPLIT",
                          help="train, val or test (default %(default)s)")
    evaluate.add_argument("--clip-frames", type=_clip_frames, default=200, metavar="N|auto",
                          help="frames each clip is cut to (default %(default)s = 8 s, the "
                               "shortest that keeps 5 pairs per offset at level 4; shorter "
                               "clips are skipped), or 'auto': 2, 3, 5, 8 s at levels 1-4, so "
                               "that short clips count at the fine levels")
    evaluate.add_argument("--against", choices=("none", "keypoints", "rendered"), default=None,
                          help="with --model on a landmarks-v1 dataset with wavs: each clip of "
                               "the split generated from its first frame and speech, its mouth "
                               "compared with the recording on the keypoints and on the rendered "
                               "frames "
                               "re-tracked by dlib (rendered, the default there: about 0.2 s a "
                               "frame of speech on 2 CPU cores), on the keypoints only "
                               "(keypoints, about 0.07 s a frame) or not at all (none)")
    evaluate.set_defaults(handler=_command("motion.app.evaluate:evaluate_command"))


def _analyze_command(commands) -> None:
    """``msync analyze``."""
    analyze = commands.add_parser(
        "analyze", help="how head motion follows speech (the paper's Table 2)",
        description="How much head motion follows speech, per time scale (the paper's Table 2): "
                    "trains one small syncer per scale and fold on the rigid points, "
                    "cross-validated by speaker so that every clip is scored once by syncers "
                    "that never saw its speaker, then compares |AV-Off| of real pairs with "
                    "random pairs (and generated motion), with permutation p-values. Writes "
                    "OUT/report.md, report.json and plots.",
        epilog=_examples("msync analyze --data ds/ --out runs/analysis",
                         "msync analyze --data runs/phantom --points 0-4 --out runs/analysis",
                         "msync analyze --videos videos/ --out runs/analysis --workers 2"))
    source = analyze.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", metavar="DIR",
                        help="a prepared dataset (msync data prepare or synth)")
    source.add_argument("--videos", metavar="DIR",
                        help="a folder of talking-head videos: prepared first into "
                             "OUT/dataset (dlib landmarks, split by speaker)")
    analyze.add_argument("--speakers", metavar="TABLE.tsv",
                         help="file/speaker table (tab-separated columns file, speaker) "
                              "naming each video's speaker for the folds (default: the file "
                              "name up to its last '_')")
    analyze.add_argument("--recordings", metavar="TABLE.tsv",
                         help="videos that are pieces of one longer recording (tab-separated "
                              "columns file, recording, part: the piece's order): consecutive "
                              "pieces are joined into clips of up to the longest span a scale "
                              "scores (31 s at 800 ms) before the folds are dealt")
    analyze.add_argument("--workers", type=_positive_int, default=1, metavar="N",
                         help="with --videos: videos prepared in parallel, >= 1 (default "
                              "%(default)s)")
    analyze.add_argument("--out", required=True, metavar="DIR",
                         help="folder for the report, the plots and the syncers (a rerun "
                              "resumes)")
    analyze.add_argument("--points", default="17-47", metavar="RANGES",
                         help="rigid points, indices 0-999 as ranges, e.g. 17-47 (landmarks: "
                              "brows, nose, eyes; the default) or 0-4 (phantom keypoints)")
    analyze.add_argument("--generated", metavar="DIR",
                         help="also score a dataset of generated motion (same clip ids)")
    analyze.add_argument("--scales", type=_positive_int, default=3, metavar="N",
                         help="syncer scales, 1 to 4: 200, 400, 800, 1600 ms (default "
                              "%(default)s)")
    analyze.add_argument("--folds", type=_positive_int, default=None, metavar="K",
                         help="cross-validation folds by speaker, >= 2 (default 5, fewer "
                              "where a fold would hold only one clip)")
    analyze.add_argument("--config", metavar="YAML",
                         help="syncer config (default configs/analyze.yaml)")
    _set_flag(analyze, "train.steps=200")
    analyze.set_defaults(handler=_command("motion.app.analyze:analyze_command"))


def _demo_command(commands) -> None:
    """``msync demo``."""
    demo = commands.add_parser(
        "demo", help="the whole pipeline on a phantom corpus -> an HTML page",
        description="The whole pipeline on a synthetic phantom corpus, on a CPU in minutes: "
                    "synthesise, train the small syncers and generator, evaluate, analyse, "
                    "generate videos, then write OUT/index.html (open it in a browser; it "
                    "lists every command it ran). Rerunning continues where it stopped.",
        epilog=_examples("msync demo --out demo/",
                         "msync demo --out quick/ --set corpus.clips=40 --set "
                         "'generator.overrides=[train.steps=100]'"))
    demo.add_argument("--out", required=True, metavar="DIR",
                      help="folder for the runs, the videos and index.html")
    demo.add_argument("--config", metavar="YAML",
                      help="demo config: corpus size, stage configs and overrides (default "
                           "configs/demo.yaml)")
    _set_flag(demo, "corpus.clips=40")
    demo.set_defaults(handler=_command("motion.app.demo:demo_command"))


def _motion_commands(commands) -> None:
    """``msync motion``: the released generator (convert, parity)."""
    motion = commands.add_parser(
        "motion", help="the released MS-Sync generator (convert, parity)",
        description="The authors' released MS-Sync generator: convert it to an msync model, or "
                    "run it on saved inputs for comparison with PyTorch.").add_subparsers(
        dest="motion_command", required=True, parser_class=_Parser, metavar="SUBCOMMAND")
    motion_convert = motion.add_parser(
        "convert", help="the authors' MS-Sync release (args + model_chkpt.pt) -> an msync model",
        description="Convert the authors' MS-Sync release (args + model_chkpt.pt, read with "
                    "torch.load(weights_only=True); needs msync[torch]) into an msync model "
                    "that generate runs with --fomm-checkpoint.",
        epilog=_examples("msync motion convert --checkpoint checkpoint/ --out ms-sync",
                         "msync generate --model ms-sync --fomm-checkpoint fomm-vox-adv "
                         "--image face.png --audio speech.wav --out talking.mp4"))
    motion_convert.add_argument("--checkpoint", required=True, metavar="DIR",
                                help="the release directory: args and model_chkpt.pt")
    motion_convert.add_argument("--out", required=True, metavar="MODEL",
                                help="model directory to write (model.json, params.msgpack)")
    motion_convert.set_defaults(handler=_command("motion.app.official:convert_command"))
    motion_parity = motion.add_parser(
        "parity", help="run a converted release on inputs from an npz",
        description="Run a converted MS-Sync release on inputs from an npz and save its "
                    "outputs, for comparison with the official PyTorch code.",
        epilog=_examples("msync motion parity --model ms-sync --inputs in.npz --out out.npz"))
    motion_parity.add_argument("--model", required=True, metavar="MODEL",
                               help="a model from msync motion convert")
    motion_parity.add_argument("--inputs", required=True, metavar="IN.npz",
                               help="inpt and audio (the raw forward), or wav and kp0 (the "
                                    "front-end and the inference protocol)")
    motion_parity.add_argument("--out", required=True, metavar="OUT.npz",
                               help="the outputs (not one of the inputs)")
    motion_parity.set_defaults(handler=_command("motion.app.official:parity_command"))


def _stream_command(commands) -> None:
    """``msync stream``."""
    stream = commands.add_parser(
        "stream", help="speech arriving live -> frames as they are ready",
        description="Speech arriving live -> talking-head frames as soon as they are "
                    "determined (about 1.2-1.7 s behind the speech; about 0.3 s with "
                    "--latency low). Reads 16-bit mono PCM "
                    "from stdin, or feeds --audio in real time; writes raw RGB24 frames to "
                    "stdout (--out -) or an mp4 with the speech. Models of the landmark and "
                    "phantom spaces only.",
        epilog=_examples("msync stream --image me.jpg --audio speech.wav --out live.mp4",
                         "msync stream --latency low --image me.jpg --audio speech.wav "
                         "--out live.mp4",
                         "arecord -f S16_LE -r 16000 -c 1 | msync stream --image me.jpg "
                         "--out - | ffplay -f rawvideo -pixel_format rgb24 -video_size "
                         "256x256 -framerate 25 -"))
    stream.add_argument("--image", required=True, metavar="IMG", help="the face to animate")
    stream.add_argument("--out", required=True, metavar="MP4|-",
                        help="an mp4 (with the speech), or - for raw RGB24 frames on stdout")
    stream.add_argument("--audio", metavar="FILE",
                        help="feed this file in real time instead of PCM from stdin")
    stream.add_argument("--latency", choices=("full", "low"), default=None,
                        help="low: the bundled low-latency model (it reads 200 ms of speech "
                             "ahead: frames about 0.3 s behind), or with --model, check that "
                             "the model is one; full (the default): the bundled model (1.16 s "
                             "ahead)")
    stream.add_argument("--sample-rate", type=_positive_int, default=16000, metavar="HZ",
                        help="of the 16-bit mono PCM on stdin, 1000-384000 (default %(default)s)")
    stream.add_argument("--chunk-ms", type=_positive_float, default=40.0, metavar="MS",
                        help="audio read per push, 1-10000 milliseconds (default %(default)s)")
    stream.add_argument("--verbose", action="store_true",
                        help="per-chunk compute time and frame latency on stderr")
    add_generation_options(stream, STREAM_RENDERERS)
    stream.set_defaults(handler=_command("motion.app.stream:stream_command", landmarks=True))


def _ui_command(commands) -> None:
    """``msync ui``."""
    ui = commands.add_parser(
        "ui", help="a web page: generate, analyse, live microphone (msync[ui])",
        description="Serve a web page (Gradio, from msync[ui]) with three tabs: Generate (photo "
                    "or webcam, speech or microphone), Analyse (videos or a dataset) and Live "
                    "(the microphone streamed). Listens on this machine only by default; "
                    "Ctrl-C stops it.",
        epilog=_examples("msync ui                      # then open http://127.0.0.1:7860",
                         "msync ui --model runs/generator --data ds/ --port 8080"))
    ui.add_argument("--host", default="127.0.0.1",
                    help="address to listen on (default %(default)s: this machine only)")
    ui.add_argument("--port", type=int, default=7860,
                    help="port to listen on, 1-65535 (default %(default)s)")
    ui.add_argument("--model", dest="models", action="append", default=[], metavar="RUN",
                    help="a generator the page offers besides the bundled one (repeatable)")
    ui.add_argument("--data", dest="datasets", action="append", default=[], metavar="DIR",
                    help="a prepared dataset the Analyse tab offers (repeatable)")
    ui.add_argument("--analyze-config", metavar="YAML",
                    help="syncer config of the Analyse tab (default configs/analyze.yaml)")
    ui.add_argument("--max-upload-mb", type=_positive_float, default=50.0, metavar="MB",
                    help="largest upload accepted, megabytes > 0 (default %(default)s)")
    ui.set_defaults(handler=_command("motion.app.ui:ui_command"))


def _render_commands(commands) -> None:
    """``msync render``: FOMM tools (convert, parity)."""
    render = commands.add_parser(
        "render", help="FOMM renderer tools (convert, parity)",
        description="The FOMM renderer: convert the official weights, or run the Flax port on "
                    "saved inputs.").add_subparsers(
        dest="render_command", required=True, parser_class=_Parser, metavar="SUBCOMMAND")
    convert = render.add_parser(
        "convert", help="FOMM .pth.tar -> orbax weights",
        description="Convert an official FOMM checkpoint (vox-cpk.pth.tar or "
                    "vox-adv-cpk.pth.tar, read with torch.load(weights_only=True); needs "
                    "msync[torch]) into DIR/weights (orbax) and DIR/fomm.json; later loads "
                    "need no torch.",
        epilog=_examples("msync render convert --checkpoint vox-cpk.pth.tar --config "
                         "configs/render/vox-256.yaml --out fomm-vox"))
    convert.add_argument("--checkpoint", required=True, metavar="PTH",
                         help="the official FOMM checkpoint")
    convert.add_argument("--config", required=True, metavar="YAML",
                         help="its FOMM YAML (configs/render/vox-256.yaml or vox-adv-256.yaml)")
    convert.add_argument("--out", required=True, metavar="DIR",
                         help="directory to write (weights/, fomm.json)")
    convert.set_defaults(handler=_command("motion.app.render:convert_command"))
    parity = render.add_parser(
        "parity", help="run the Flax FOMM on inputs from an npz",
        description="Run the Flax FOMM on source, drv_value and drv_jacobian from an npz and "
                    "save keypoints, prediction, occlusion map, mask and deformed image, for "
                    "comparison with the official PyTorch modules.",
        epilog=_examples("msync render parity --checkpoint fomm-vox --inputs in.npz --out "
                         "out.npz"))
    parity.add_argument("--checkpoint", required=True, metavar="PTH|DIR",
                        help="an official .pth.tar or a msync render convert directory")
    parity.add_argument("--inputs", required=True, metavar="IN.npz",
                        help="source [H, W, 3], drv_value, drv_jacobian")
    parity.add_argument("--out", required=True, metavar="OUT.npz",
                        help="the outputs (not one of the inputs)")
    parity.add_argument("--config", metavar="YAML",
                        help="FOMM YAML for a .pth.tar (default configs/render/vox-256.yaml)")
    parity.add_argument("--grid-align-corners", choices=("true", "false"), default="true",
                        help="grid_sample's convention: true as FOMM was trained (default), "
                             "false as torch >= 1.3 defaults")
    parity.set_defaults(handler=_command("motion.app.render:parity_command"))


# OS errors about a path that are the user's to fix (exit 2), not msync's (exit 1).
_PATH_ERRNOS = frozenset({errno.EEXIST, errno.ENOTDIR, errno.EISDIR, errno.EACCES, errno.EPERM,
                          errno.EROFS, errno.ENOSPC, errno.ENAMETOOLONG})


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    interrupt_on_sigterm()          # a terminated run removes its partial files, as Ctrl-C does
    try:
        # Before any command imports JAX, which reads the cache's settings once (compile_cache).
        compile_cache.enable(off=args.no_cache)
        if getattr(args, "distributed", False):
            # Imported here, before the handler imports anything that could start a JAX
            # backend: jax.distributed must be initialised first.
            from syncers.run import parallel
            parallel.initialize()
        args.handler(args)
    except InputError as err:
        return _bad_input(str(err), args.debug)
    except OSError as err:
        if err.errno not in _PATH_ERRNOS or err.filename is None:
            return _internal_error(err, args.debug)
        # The system refused a path the user gave (an --out that is a file, a read-only
        # folder, a full disk): bad input, named like every other.
        return _bad_input(f"{err.filename}: {err.strerror}", args.debug)
    except KeyboardInterrupt:
        print("msync: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - the last line of defence: one line, exit 1
        return _internal_error(err, args.debug)
    return 0


def _bad_input(message: str, debug: bool) -> int:
    if debug:
        traceback.print_exc()
    print(f"msync: error: {message}", file=sys.stderr)
    return 2


def _internal_error(err: Exception, debug: bool) -> int:
    if debug:
        traceback.print_exc()
    print(f"msync: internal error: {type(err).__name__}: {err} (rerun with --debug)",
          file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
