"""What both trainers do around their jitted step: checkpoint and restore a train state, refuse
a resumption with a changed config, stop on a non-finite loss, and the step loop itself.

Functions, not a framework: each trainer (``syncers.train``, ``motion.train``) keeps its own
state, step, batches and log rows, and passes them in.

The loop (:func:`run_steps`) dispatches step N before it reads back step N−1's metrics, so the
device never waits for the host; metrics are read to the host only every ``log_every`` steps
(and at the last), where a row goes to ``metrics.jsonl``. Checkpoints are taken every
``checkpoint_every`` steps, at the last step and when this invocation's step budget runs out;
rerunning the same command resumes from the last one (``restore``).
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import jax

from syncers.run import config as config_lib
from syncers.run import parallel
from syncers.run.errors import InputError, one_line
from syncers.run.rundir import config_diff, quiet_library_logs


def state_tree(state: Any) -> dict[str, Any]:
    """A ``flax.struct.dataclass`` train state as the dict orbax checkpoints (every field)."""
    return {f.name: getattr(state, f.name) for f in dataclasses.fields(state)}


def save(manager, state: Any) -> bool:
    """Checkpoint ``state`` at its step (blocking); False when that step is saved already."""
    import orbax.checkpoint as ocp  # deferred: orbax takes a second to import
    step = int(state.step)
    if manager.latest_step() == step:
        return False
    manager.save(step, args=ocp.args.StandardSave(state_tree(state)))
    manager.wait_until_finished()
    return True


def restore(manager, state: Any, directory: Path, *, reader: bool = False) -> Any:
    """``state`` with the newest intact checkpoint's values (same type, shapes and shardings),
    or ``state`` itself when there is none.

    A checkpoint that cannot be restored (damaged: a file cut short, overwritten or missing) is
    passed over for the next older one (orbax keeps ``max_to_keep``), with one warning line on
    stderr. A trainer (not ``reader``; it holds the run's lock) moves the damaged steps aside,
    to ``<directory>.damaged/<step>``, so that it saves those steps again; a reader leaves
    them. None intact (or a foreign checkpoint) is bad input. orbax's own log lines are kept
    off stderr."""
    import orbax.checkpoint as ocp  # deferred: orbax takes a second to import
    steps = sorted(manager.all_steps(), reverse=True)
    if not steps:
        return state
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, state_tree(state))
    damaged: list[tuple[int, str]] = []
    for step in steps:
        try:
            with quiet_library_logs():
                restored = manager.restore(step, args=ocp.args.StandardRestore(target))
        except InputError:
            raise
        except Exception as err:  # noqa: BLE001 - a damaged or foreign checkpoint
            damaged.append((step, one_line(err)))
            continue
        break
    else:
        newest, reason = damaged[0]
        raise InputError(directory, f"cannot restore the checkpoint of step {newest} "
                                    f"({reason}){' nor any older one' * (len(steps) > 1)}; "
                                    "delete the directory to start over")
    if damaged:
        newest, reason = damaged[0]
        steps_text = ", ".join(str(s) for s, _ in damaged)
        if reader:
            action = f"reading step {step} instead"
        else:
            aside = _move_aside(manager, directory, [s for s, _ in damaged])
            action = f"moved to {aside}; resuming from step {step}"
        if parallel.is_primary():
            print(f"msync: warning: {directory}: damaged checkpoint of step {steps_text} "
                  f"({reason}); {action}", file=sys.stderr)
    return type(state)(**restored)


def _move_aside(manager, directory: Path, steps: Sequence[int]) -> Path:
    """Move the step directories ``steps`` of ``directory`` to ``<directory>.damaged/`` (process
    0; every process then rereads the steps); returns that folder."""
    aside = directory.parent / f"{directory.name}.damaged"
    if parallel.is_primary():
        aside.mkdir(exist_ok=True)
        for step in steps:
            name = str(step)
            while (aside / name).exists():
                name += "+"
            os.replace(directory / str(step), aside / name)
    parallel.sync("msync-damaged-checkpoints-moved")
    manager.reload()
    return aside


def check_resumed_config(cls: type, config: Any, path: Path, resumable: Sequence[str]) -> None:
    """Refuse to resume the run whose resolved config is ``path`` with ``config`` if they differ
    in a key other than ``resumable`` ones (those change no step's arithmetic)."""
    if not path.is_file():
        return
    previous = config_lib.to_dict(config_lib.load(cls, path))
    for key in config_diff(previous, config_lib.to_dict(config)):
        if key not in resumable:
            raise InputError(path, f"this run was started with a different {key} "
                                   "(resuming needs the same config; use a new --out)")


@dataclasses.dataclass
class LoopResult:
    state: Any
    ran: int               # steps this invocation ran
    stopped: bool          # the step budget ended it before the last step
    seconds: float


def run_steps(state: Any, dispatch: Callable[[Any, int], tuple[Any, Any]], *, steps: int,
              log_every: int, checkpoint_every: int, budget: int | None,
              check: Callable[[int, Any], None],
              log_row: Callable[[int, dict, float], dict],
              checkpoint: Callable[[Any], None], bar, metrics_path: Path, primary: bool,
              extra_row: Callable[[int, Any], dict | None] | None = None) -> LoopResult:
    """Run ``state`` up to ``steps`` (at most ``budget`` steps in this call).

    - ``dispatch(state, step) -> (state, metrics)`` builds step ``step``'s batch and runs it;
    - ``check(step, metrics)`` raises on a non-finite loss (called once per step, a step late);
    - ``log_row(done, host_metrics, steps_per_s) -> row`` formats a log row (and may update
      ``bar``'s postfix); ``extra_row(done, state)`` adds keys to (or makes) the row at that
      step, e.g. validation, or returns None;
    - ``checkpoint(state)`` saves (every process calls it: orbax saves collectively);
    - only the ``primary`` process appends rows to ``metrics_path``.
    """
    start = time.perf_counter()
    interval_start, interval_steps = start, 0
    pending = None        # the previous step's metrics, read after the next step is dispatched
    stopped = False
    ran = 0
    while int(state.step) < steps:
        step = int(state.step)
        state, metrics = dispatch(state, step)
        ran += 1
        interval_steps += 1
        if pending is not None:
            check(*pending)
        pending = (step + 1, metrics)
        done = step + 1
        stopping = budget is not None and ran >= budget
        row = None
        if done % log_every == 0 or done == steps:
            values = jax.device_get(metrics)
            check(done, values)
            now = time.perf_counter()
            row = log_row(done, values, interval_steps / max(now - interval_start, 1e-9))
            interval_start, interval_steps = now, 0
        extra = extra_row(done, state) if extra_row is not None else None
        if extra is not None:
            row = dict(row or {"step": done}, **extra)
        if row is not None and primary:
            with open(metrics_path, "a") as handle:
                handle.write(json.dumps(row) + "\n")
        bar.update(1)
        if done % checkpoint_every == 0 or done == steps or stopping:
            checkpoint(state)
        if stopping:
            stopped = True
            break
    if pending is not None:
        check(*pending)
    checkpoint(state)
    return LoopResult(state, ran, stopped and int(state.step) < steps,
                      time.perf_counter() - start)
