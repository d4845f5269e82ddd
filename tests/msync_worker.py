"""``msync`` in a subprocess, for the data-parallel and fault-injection tests.

``python tests/msync_worker.py ARGS...`` runs ``motion.app.cli.main(ARGS)`` and exits with its code.
Test hooks, from the environment (none changes what is computed):

- ``MSYNC_TEST_STEP_SLEEP=s``: each training batch takes ``s`` seconds longer to sample, so a
  kill lands in the middle of the training loop.
- ``MSYNC_TEST_SLOW_SAVE=n``: the n-th checkpoint save of this invocation (1-based) stalls
  for ten minutes after writing everything into orbax's temporary step directory and
  before renaming it into place (announced on stderr as ``msync-worker: stalled saving
  PATH``), so a kill lands mid-save.
- ``MSYNC_TEST_SLOW_EXPORT=n``: the n-th generator export of this invocation (1-based) stalls
  for ten minutes after moving ``params.msgpack`` into ``RUN/model`` and before moving
  ``model.json`` (announced on stderr as ``msync-worker: stalled exporting PATH``), so a kill
  leaves new parameters beside the previous export's ``model.json``.
- ``MSYNC_TEST_DUMP=PATH``: after a successful ``train syncers``, read the run back with
  ``load_run`` (collectively, on every process) and save this process's parameters to
  ``PATH.<process index>.npz``.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _install_hooks() -> None:
    step_sleep = float(os.environ.get("MSYNC_TEST_STEP_SLEEP", 0))
    slow_save = int(os.environ.get("MSYNC_TEST_SLOW_SAVE", 0))
    slow_export = int(os.environ.get("MSYNC_TEST_SLOW_EXPORT", 0))
    if slow_export:
        from motion import saved_model
        move_in = saved_model._move_in
        exports = []

        def slow_move_in(staged, final):
            if final.name == saved_model.META:
                exports.append(final)
                if len(exports) == slow_export:
                    print(f"msync-worker: stalled exporting {final.parent}", file=sys.stderr,
                          flush=True)
                    time.sleep(600)
            move_in(staged, final)

        saved_model._move_in = slow_move_in
    if step_sleep:
        from syncers.sampling import Sampler
        batch = Sampler.batch

        def slow_batch(self, *args, **kwargs):
            time.sleep(step_sleep)
            return batch(self, *args, **kwargs)

        Sampler.batch = slow_batch
    if slow_save:
        from orbax.checkpoint._src.path import atomicity
        finalize = atomicity.AtomicRenameTemporaryPath.finalize
        saves = []

        async def slow_finalize(self):
            # Items are finalised inside the step's temporary directory first; count steps.
            if self.get_final().name.isdigit():
                saves.append(self)
            if len(saves) == slow_save and self.get_final().name.isdigit():
                print(f"msync-worker: stalled saving {self.get()}", file=sys.stderr, flush=True)
                time.sleep(600)
            await finalize(self)

        atomicity.AtomicRenameTemporaryPath.finalize = slow_finalize


def _dump(run: str, path: str) -> None:
    import jax
    import numpy as np

    from syncers.train import load_run
    trained = load_run(run)
    arrays = {}
    for level, params in trained.params.items():
        for key, value in jax.tree_util.tree_flatten_with_path(params)[0]:
            arrays[f"{level}{jax.tree_util.keystr(key)}"] = np.asarray(value)
    np.savez(f"{path}.{jax.process_index()}.npz", **arrays)


def main(argv: list[str]) -> int:
    _install_hooks()
    from motion.app import cli
    code = cli.main(argv)
    dump = os.environ.get("MSYNC_TEST_DUMP")
    if code == 0 and dump:
        _dump(argv[argv.index("--out") + 1], dump)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
