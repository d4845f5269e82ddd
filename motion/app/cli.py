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
import traceback
from typing import Callable, Sequence

from syncers.run.errors import InputError

def _command(target: str) -> Callable[[argparse.Namespace], None]:
    """A handler calling ``module:function(args)``. The module is imported when its command
    runs, not here, so that ``msync --help`` does not load JAX, Flax and the models."""
    module_name, function_name = target.split(":")

    def handler(args: argparse.Namespace) -> None:
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
        help="multi-host: start jax.distributed first (SLURM, Open MPI, cloud TPU detected; "
             "else JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID)")


class _Parser(argparse.ArgumentParser):
    # argparse's own exit code for usage errors is already 2; keep its message to one line.
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="msync", description="MS-Sync talking heads in JAX/Flax.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    data = commands.add_parser("data", help="make datasets").add_subparsers(
        dest="data_command", required=True, parser_class=_Parser)
    synth = data.add_parser("synth", help="synthesise a phantom corpus with known coupling")
    synth.add_argument("--out", required=True, help="dataset directory to write")
    synth.add_argument("--clips", type=_positive_int, default=200)
    synth.add_argument("--seconds", type=_positive_float, default=8.0)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--coupling", type=_coupling, default={},
                       help="coupling gains, e.g. head=0 (negative control) or lips=0")
    synth.add_argument("--features", choices=("logmel", "mfcc"), default="logmel")
    synth.set_defaults(handler=_command("motion.app.synth:synth_command"))
    prepare = data.add_parser("prepare", help="turn real videos into a dataset")
    prepare.add_argument("--videos", required=True,
                         help="folder of videos (or of speaker folders holding them)")
    prepare.add_argument("--out", required=True)
    prepare.add_argument("--fomm-checkpoint",
                         help="keypoints from FOMM's detector (fomm-vox256) instead of the "
                              "landmark keypoints (landmarks-v1, the default: no weights needed)")
    prepare.add_argument("--fomm-config", help="FOMM YAML (default configs/render/vox-256.yaml)")
    prepare.add_argument("--landmarker", choices=("dlib", "face-alignment"), default="dlib",
                         help="68-point landmarks: dlib (offline, default) or face-alignment "
                              "(needs msync[torch] and its weights)")
    prepare.add_argument("--flip", action="store_true",
                         help="also store keypoints of the horizontally flipped video")
    prepare.add_argument("--split-by", choices=("speaker", "clip"), default="speaker")
    prepare.add_argument("--speakers", metavar="TABLE.tsv",
                         help="tab-separated 'file' and 'speaker' columns: split by these speakers")
    prepare.add_argument("--split", choices=("train", "val", "test"),
                         help="put every clip into this split (an evaluation set)")
    prepare.add_argument("--shard", type=_shard, default=(1, 1), metavar="K/N",
                         help="prepare only every N-th video from the K-th (several machines)")
    prepare.add_argument("--min-seconds", type=_positive_float, default=2.0)
    prepare.add_argument("--workers", type=_positive_int, default=1,
                         help="videos prepared in parallel (processes)")
    prepare.set_defaults(handler=_command("motion.app.prepare:prepare_command"))

    train = commands.add_parser("train", help="train syncers or the generator").add_subparsers(
        dest="train_command", required=True, parser_class=_Parser)
    syncers = train.add_parser("syncers", help="stage 1: the syncer pyramid")
    syncers.add_argument("--data", required=True)
    syncers.add_argument("--out", required=True)
    syncers.add_argument("--config", help="YAML (default: configs/syncers.yaml)")
    syncers.add_argument("--set", dest="overrides", action="append", default=[],
                         metavar="KEY=VALUE")
    syncers.add_argument("--levels", type=_levels)
    _distributed_flag(syncers)
    syncers.set_defaults(handler=_command("motion.app.train:train_syncers_command"))
    generator = train.add_parser("generator", help="stage 2: the multi-scale generator")
    generator.add_argument("--data", required=True)
    generator.add_argument("--syncers", required=True)
    generator.add_argument("--out", required=True)
    generator.add_argument("--config")
    generator.add_argument("--set", dest="overrides", action="append", default=[],
                           metavar="KEY=VALUE")
    _distributed_flag(generator)
    generator.set_defaults(handler=_command("motion.app.train:train_generator_command"))

    generate = commands.add_parser("generate", help="image + speech -> talking-head video")
    generate.add_argument("--image")
    generate.add_argument("--audio")
    generate.add_argument("--out", required=True)
    generate.add_argument("--model")
    generate.add_argument("--fomm-checkpoint")
    generate.add_argument("--renderer", choices=("mesh", "warp", "fomm"),
                          help="how frames are drawn: mesh (landmark-space models, the default "
                               "for them: a triangle mesh over the face with a painted mouth "
                               "interior), warp (a weight-free first-order warp; the default for "
                               "phantom models) or fomm (needs --fomm-checkpoint)")
    generate.add_argument("--keypoints-out")
    generate.add_argument("--head-scale", type=float, default=1.0)
    generate.add_argument("--lip-scale", type=float, default=1.0)
    generate.add_argument("--audio-normalization", metavar="{corpus,none}",
                          help="match the audio features to the model's training corpus "
                               "(default: corpus when the model records its statistics)")
    generate.add_argument("--drift-window", type=float, metavar="SECONDS",
                          help="remove motion slower than this window (0 = off; default: the "
                               "model's drift_window_s, else 0)")
    generate.add_argument("--no-crop", action="store_true",
                          help="animate the centre square of the image when no face is found "
                               "(paintings, cartoons); the face is assumed to fill its middle half")
    generate.add_argument("--crop-scale", type=float, default=1.8,
                          help="side of the square crop over the face box's side (default 1.8: "
                               "the whole head with some margin; 1.2 to 4)")
    generate.add_argument("--size", type=int, choices=(256, 512), default=256,
                          help="output frames are SIZE x SIZE (default 256; the FOMM renderer "
                               "draws 256 and is upsampled to 512)")
    generate.set_defaults(handler=_command("motion.app.generate:generate_command"))

    evaluate = commands.add_parser("evaluate", help="multi-scale sync metrics")
    evaluate.add_argument("--data", required=True)
    evaluate.add_argument("--syncers", required=True)
    evaluate.add_argument("--out", required=True)
    evaluate.add_argument("--model")
    evaluate.add_argument("--split", default="test")
    evaluate.add_argument("--clip-frames", type=_clip_frames, default=200,
                          help="frames each clip is cut to (200 = 8 s), or 'auto': 2, 3, 5, 8 s "
                               "at levels 1-4, so that short clips count at the fine levels")
    evaluate.set_defaults(handler=_command("motion.app.evaluate:evaluate_command"))

    analyze = commands.add_parser("analyze", help="speech/head-motion correlation (Table 2)")
    source = analyze.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", help="a prepared dataset (msync data prepare or synth)")
    source.add_argument("--videos", help="a folder of talking-head videos: prepared first into "
                                         "OUT/dataset (dlib landmarks, split by speaker)")
    analyze.add_argument("--speakers", metavar="TABLE.tsv",
                         help="with --videos: file/speaker table for the split")
    analyze.add_argument("--workers", type=_positive_int, default=1,
                         help="with --videos: videos prepared in parallel")
    analyze.add_argument("--out", required=True)
    analyze.add_argument("--points", default="17-47",
                         help="rigid points, e.g. 17-47 (landmarks) or 0-4 (phantom keypoints)")
    analyze.add_argument("--generated", help="dataset of generated motion (same clip ids)")
    analyze.add_argument("--scales", type=_positive_int, default=3,
                         help="syncer scales: 200, 400, 800 (, 1600) ms")
    analyze.add_argument("--split", default="heldout",
                         choices=("heldout", "test", "val", "train", "all"),
                         help="clips scored (heldout = val + test)")
    analyze.add_argument("--config", help="syncer YAML (default: configs/analyze.yaml)")
    analyze.add_argument("--set", dest="overrides", action="append", default=[],
                         metavar="KEY=VALUE")
    analyze.set_defaults(handler=_command("motion.app.analyze:analyze_command"))

    demo = commands.add_parser("demo", help="the whole pipeline on the phantom corpus")
    demo.add_argument("--out", required=True)
    demo.add_argument("--config", help="YAML (default: configs/demo.yaml)")
    demo.add_argument("--set", dest="overrides", action="append", default=[],
                      metavar="KEY=VALUE")
    demo.set_defaults(handler=_command("motion.app.demo:demo_command"))

    motion = commands.add_parser("motion", help="the released MS-Sync generator").add_subparsers(
        dest="motion_command", required=True, parser_class=_Parser)
    motion_convert = motion.add_parser(
        "convert", help="the authors' MS-Sync release (args + model_chkpt.pt) -> an msync model")
    motion_convert.add_argument("--checkpoint", required=True, metavar="DIR",
                                help="the release directory: args and model_chkpt.pt")
    motion_convert.add_argument("--out", required=True, metavar="MODEL")
    motion_convert.set_defaults(handler=_command("motion.app.official:convert_command"))
    motion_parity = motion.add_parser("parity",
                                      help="run a converted release on inputs from an npz")
    motion_parity.add_argument("--model", required=True)
    motion_parity.add_argument("--inputs", required=True, metavar="IN.npz",
                               help="inpt and audio (the raw forward), or wav and kp0 (the "
                                    "front-end and the inference protocol)")
    motion_parity.add_argument("--out", required=True, metavar="OUT.npz")
    motion_parity.set_defaults(handler=_command("motion.app.official:parity_command"))

    _live_commands(commands)

    render = commands.add_parser("render", help="renderer tools").add_subparsers(
        dest="render_command", required=True, parser_class=_Parser)
    convert = render.add_parser("convert", help="FOMM .pth.tar -> orbax weights")
    convert.add_argument("--checkpoint", required=True)
    convert.add_argument("--config", required=True)
    convert.add_argument("--out", required=True)
    convert.set_defaults(handler=_command("motion.app.render:convert_command"))
    parity = render.add_parser("parity", help="run the Flax FOMM on inputs from an npz")
    parity.add_argument("--checkpoint", required=True)
    parity.add_argument("--inputs", required=True)
    parity.add_argument("--out", required=True)
    parity.add_argument("--config")
    parity.add_argument("--grid-align-corners", choices=("true", "false"), default="true")
    parity.set_defaults(handler=_command("motion.app.render:parity_command"))
    return parser


def _live_commands(commands) -> None:
    """``msync stream`` and ``msync ui`` (issue 23: streaming and the web page)."""
    stream = commands.add_parser("stream", help="speech arriving live -> frames as they are ready")
    stream.add_argument("--image", required=True)
    stream.add_argument("--out", required=True, metavar="MP4|-",
                        help="an mp4 (with the speech), or - for raw RGB24 frames on stdout")
    stream.add_argument("--audio", metavar="FILE",
                        help="feed this file in real time instead of PCM from stdin")
    stream.add_argument("--sample-rate", type=_positive_int, default=16000,
                        help="of the 16-bit mono PCM on stdin (default 16000)")
    stream.add_argument("--chunk-ms", type=_positive_float, default=40.0,
                        help="audio read per push, milliseconds (default 40)")
    stream.add_argument("--model")
    stream.add_argument("--renderer", choices=("mesh", "warp"))
    stream.add_argument("--head-scale", type=float, default=1.0)
    stream.add_argument("--lip-scale", type=float, default=1.0)
    stream.add_argument("--audio-normalization", metavar="{corpus,none}")
    stream.add_argument("--drift-window", type=float, metavar="SECONDS")
    stream.add_argument("--no-crop", action="store_true")
    stream.add_argument("--verbose", action="store_true",
                        help="per-chunk compute time and frame latency on stderr")
    stream.set_defaults(handler=_command("motion.app.stream:stream_command"))

    ui = commands.add_parser("ui", help="the web page: generate, analyse, live microphone")
    ui.add_argument("--host", default="127.0.0.1",
                    help="address to listen on (default 127.0.0.1: this machine only)")
    ui.add_argument("--port", type=int, default=7860)
    ui.add_argument("--model", dest="models", action="append", default=[], metavar="RUN",
                    help="a generator the page offers besides the bundled one (repeatable)")
    ui.add_argument("--data", dest="datasets", action="append", default=[], metavar="DIR",
                    help="a prepared dataset the Analyse tab offers (repeatable)")
    ui.add_argument("--analyze-config", metavar="YAML",
                    help="syncer config of the Analyse tab (default configs/analyze.yaml)")
    ui.add_argument("--max-upload-mb", type=_positive_float, default=50.0,
                    help="largest upload accepted, MB (default 50)")
    ui.set_defaults(handler=_command("motion.app.ui:ui_command"))


# OS errors about a path that are the user's to fix (exit 2), not msync's (exit 1).
_PATH_ERRNOS = frozenset({errno.EEXIST, errno.ENOTDIR, errno.EISDIR, errno.EACCES, errno.EPERM,
                          errno.EROFS, errno.ENOSPC, errno.ENAMETOOLONG})


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
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
