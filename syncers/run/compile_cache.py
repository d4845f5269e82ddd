"""Compiled programs kept across runs: JAX's persistent compilation cache (docs/design.md,
"Warm starts").

Every ``msync`` command that runs a model compiles its programs with XLA first; for the README's
first command that is most of its time. :func:`enable` points JAX's persistent cache at
``$XDG_CACHE_HOME/msync/jax`` (``~/.cache/msync/jax``), so a second run of the same sizes loads
the programs instead. It works through JAX's environment variables, which JAX reads when it is
first imported, so the CLI calls it before anything imports JAX and processes it starts inherit
it; when JAX is already imported (a library caller) the same settings go through
``jax.config``.

Safety of the key: JAX's own key hashes the lowered program, the compile options, jaxlib's and
the backend's versions and the XLA flags (``XLA_FLAGS``), so a program compiled with other flags
is not loaded. On top of that each JAX/jaxlib version and each host CPU (architecture and
instruction-set extensions, which XLA compiles CPU code for) gets its own folder, so a cache in a
home directory shared between machines, or left by another JAX, is never read.

A cache hit still traces and lowers the program in Python first (for the mesh renderer's
frame program, over a second of a warm run). :func:`traced_jit` keeps the largest programs'
traced form too: the program exported with ``jax.export`` (StableHLO, shape-specific), stored
beside the compiled ones under a key of msync's own source files, the JAX versions, the
backend, the arguments' tree and shapes and the static options; a stored one is called
without tracing the Python again.

Off with ``msync --no-cache`` or ``MSYNC_NO_COMPILE_CACHE=1`` (the test suite sets it, so tests
do not depend on what ran before); a folder that cannot be written leaves the cache off with one
warning. :func:`compile_counts` tells how many programs this process compiled and how many it
loaded, which progress bars use to show a "compiling" phase (:mod:`syncers.run.progress`).
"""
from __future__ import annotations

import functools
import hashlib
import os
import platform
import sys
import threading
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

from syncers.run.errors import warn

OFF_VARIABLE = "MSYNC_NO_COMPILE_CACHE"
# JAX's settings (read from these variables when JAX is imported, ``jax.config`` after):
# where, and which programs. The defaults keep only programs that took over a second to
# compile; on a CPU most of a command's compile time is in programs under a second, so every
# program is kept (an entry is read back in milliseconds).
_SETTINGS = {"jax_compilation_cache_dir": None,
             "jax_persistent_cache_min_compile_time_secs": 0.0,
             "jax_persistent_cache_min_entry_size_bytes": -1}


def disabled_by_environment() -> bool:
    """True when ``MSYNC_NO_COMPILE_CACHE`` is set to anything but ``""`` or ``0``."""
    return os.environ.get(OFF_VARIABLE, "").strip() not in ("", "0")


def _versions() -> str:
    """``jax-X_jaxlib-Y``, from the installed packages' metadata (JAX need not be imported)."""
    parts = []
    for package in ("jax", "jaxlib"):
        try:
            parts.append(f"{package}-{metadata.version(package)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{package}-none")
    return "_".join(parts)


def _host_cpu() -> str:
    """The host's architecture and a short hash of its instruction-set extensions (Linux's
    ``/proc/cpuinfo`` flags; elsewhere the processor's name): XLA's CPU code uses them."""
    features = platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.startswith(("flags", "Features")):
                    features = " ".join(sorted(line.split(":", 1)[1].split()))
                    break
    except OSError:
        pass
    return f"{platform.machine() or 'cpu'}-{hashlib.sha256(features.encode()).hexdigest()[:12]}"


def cache_dir(root: str | os.PathLike | None = None) -> Path:
    """The cache folder of this JAX and this host: ``ROOT/<versions>/<cpu>``, ``ROOT`` being
    ``$XDG_CACHE_HOME/msync/jax`` (``~/.cache/msync/jax`` when that is unset or relative, as
    the XDG specification says) unless given."""
    if root is None:
        xdg = os.environ.get("XDG_CACHE_HOME", "")
        base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
        root = base / "msync" / "jax"
    return Path(root) / _versions() / _host_cpu()


def _writable(folder: Path) -> str | None:
    """None when ``folder`` can be created and written, else why not (one line)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        return err.strerror or type(err).__name__
    return None


def enable(root: str | os.PathLike | None = None, off: bool = False) -> Path | None:
    """Turn JAX's persistent compilation cache on in :func:`cache_dir` (``root`` as there) and
    return the folder; None, changing nothing, when ``off`` or ``MSYNC_NO_COMPILE_CACHE`` says
    so, or when the folder cannot be written (then with one warning line: msync runs, only
    compiling every time)."""
    if off or disabled_by_environment():
        return None
    folder = cache_dir(root)
    problem = _writable(folder)
    if problem is not None:
        warn(folder, f"cannot write the compilation cache ({problem}); compiling without it "
                     f"(set {OFF_VARIABLE}=1 or pass --no-cache to silence this)")
        return None
    _enabled[0] = folder
    settings = dict(_SETTINGS, jax_compilation_cache_dir=os.fspath(folder))
    for name, value in settings.items():
        os.environ[name.upper()] = str(value)
    if "jax" in sys.modules:
        # A library caller imported JAX before: it has read the variables already.
        jax = sys.modules["jax"]
        for name, value in settings.items():
            jax.config.update(name, value)
    return folder


_enabled: list[Path | None] = [None]     # the folder enable() turned on in this process


def traced_jit(fn: Callable, example_args: tuple, name: str, static: Any = None
               ) -> Callable[..., Any]:
    """The jitted ``fn`` for arguments shaped like ``example_args`` (a tuple of pytrees of
    arrays), with its traced program kept across runs when :func:`enable` turned the cache on:
    the first run exports it (``jax.export``: trace and lower once) and stores it, later runs
    (and later calls in this process) load it and call it without tracing ``fn``. ``name``
    names the file; ``static`` is whatever else ``fn`` closes over that changes its program (a
    config), by its ``repr``. The stored program is keyed by msync's source files, so an
    edited msync never calls an older program. Calls must match ``example_args``' tree, shapes
    and dtypes (JAX checks). Without the cache, or where a program cannot be stored, ``fn``
    itself is returned (its own jit cache serves repeated calls)."""
    import jax

    folder = _enabled[0]
    if folder is None:
        return fn
    leaves, tree = jax.tree_util.tree_flatten(example_args)
    shapes = [(tuple(jax.numpy.shape(leaf)), str(jax.numpy.result_type(leaf))) for leaf in leaves]
    # JAX settings that change what tracing and lowering produce go into the key too
    settings = (jax.config.jax_enable_x64, jax.config.jax_default_matmul_precision)
    key = hashlib.sha256(repr((_source_fingerprint(), jax.default_backend(), settings,
                               str(tree), shapes, repr(static))).encode()).hexdigest()[:32]
    path = folder / "traced" / f"{name}-{key}.jaxexport"
    with _counts_lock:
        known = _traced.get(path)
    if known is not None:
        return known
    exported = _load_exported(path)
    if exported is None:
        flat = jax.jit(lambda *flat_args: fn(*jax.tree_util.tree_unflatten(tree, flat_args)))
        exported = _store_exported(flat, leaves, path)
        if exported is None:
            return fn
    call = jax.jit(exported.call)

    def stored(*args):
        return call(*jax.tree_util.tree_leaves(args))

    with _counts_lock:
        _traced[path] = stored
    return stored


_traced: dict[Path, Callable] = {}     # this process's loaded programs, by file


def _load_exported(path: Path):
    """The exported program stored at ``path``, or None (absent, unreadable or from another
    JAX: it is then exported again)."""
    from jax import export
    try:
        return export.deserialize(bytearray(path.read_bytes()))
    except Exception:           # noqa: BLE001 — any unreadable entry is rebuilt, never fatal
        return None


def _store_exported(flat: Callable, leaves: list, path: Path):
    """Export ``flat`` at ``leaves``' shapes and write it to ``path`` (atomically: a reader
    never sees half a file); None when the program cannot be serialised."""
    from jax import export
    try:
        exported = export.export(flat)(*leaves)
        blob = exported.serialize()
    except Exception:           # noqa: BLE001 — e.g. an op export does not support: plain jit
        return None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}")
        partial.write_bytes(blob)
        os.replace(partial, path)
    except OSError:
        pass                    # a read-only cache only costs the next run the tracing
    return exported


@functools.lru_cache(maxsize=1)
def _source_fingerprint() -> str:
    """A hash of every Python file of msync's packages (their paths and bytes), and of the
    installed JAX: what a traced program depends on besides its arguments."""
    digest = hashlib.sha256(_versions().encode())
    here = Path(__file__).resolve().parents[2]
    for package in ("motion", "render", "syncers"):
        for path in sorted((here / package).rglob("*.py")):
            digest.update(str(path.relative_to(here)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


# Programs this process compiled / loaded from the persistent cache (compile_counts).
_counts = {"compiled": 0, "loaded": 0}
_hits_waiting = [0]          # cache hits whose compile event has not come yet
_counts_lock = threading.Lock()
_listening = [False]
# JAX's monitoring events: every backend compile, a cache hit included, ends with the first;
# a hit records the second just before (compiles in several threads at once could swap which
# is counted as which; msync compiles in one).
_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
_HIT_EVENT = "/jax/compilation_cache/cache_hits"


def _on_event(event: str, **_) -> None:
    if event == _HIT_EVENT:
        with _counts_lock:
            _hits_waiting[0] += 1


def _on_duration(event: str, duration_secs: float, **_) -> None:
    if event != _COMPILE_EVENT:
        return
    with _counts_lock:
        if _hits_waiting[0]:
            _hits_waiting[0] -= 1
            _counts["loaded"] += 1
        else:
            _counts["compiled"] += 1


def compile_counts() -> dict[str, int]:
    """``{"compiled": n, "loaded": m}``: XLA programs this process has compiled, and loaded
    from the persistent cache, since the first call (before it nothing is counted). A process
    that has not imported JAX has compiled nothing, and this does not import it."""
    if "jax" not in sys.modules:
        return dict(_counts)
    with _counts_lock:
        if not _listening[0]:
            # Imported here, and only once JAX is: at the top it would load JAX (a second or
            # more) into commands that never compile anything.
            from jax import monitoring
            monitoring.register_event_listener(_on_event)
            monitoring.register_event_duration_secs_listener(_on_duration)
            _listening[0] = True
        return dict(_counts)
