"""Real power cuts: a store on a loop-mounted ext4 or XFS, cut by the kernel's shutdown ioctl.

The simulator (`lamina.io.sim`) proves the commit protocol against a *model* of the disk, and the
kill -9 torture (`lamina.testing.torture`) proves the real code on the real kernel, but a kill
keeps the page cache, so it can never lose what was not fsynced. This module makes the kernel
lose it for real, with tools in a Debian base image and no device-mapper:

1. a sparse image file, attached with ``losetup``, formatted (``mkfs.ext4`` keeps its journal:
   the realistic case; ``mkfs.xfs`` from ``xfsprogs``) and mounted (`LoopMount`);
2. a forked writer runs flushes, merges, quarantines and retention drops on a store there;
3. the cut: ``FS_IOC_GOINGDOWN`` with ``NOLOGFLUSH`` (`shutdown`) freezes the file system as a
   power cut would: the journal's running transaction and every dirty page are thrown away, and
   nothing more reaches the device; the writer is then SIGKILLed, the file system unmounted and
   mounted again (journal replay), which is what a reboot does. The writer never runs past the
   cut: a random cut stops it (SIGSTOP) before the ioctl, a named cut is issued by the writer
   itself, which then kills itself. That matters: a shut-down XFS answers a directory fsync with
   success without writing anything, so a writer left running would acknowledge flushes that no
   power cut could have let it acknowledge.

Measured on the development machine: an unsynced 50 KB append vanished, an unsynced new file
came back empty, a rename without a directory fsync was lost; the cut itself is instant, the
remount takes 20-90 ms (LazyFS cannot lose a rename; dm-log-writes and CrashMonkey need
device-mapper, which that kernel lacks).

Two oracles judge every cut:

- **The ledger** (`KernelCutJudge`, after the rules of `lamina.testing.torture`): the writer
  reports ``W seq`` before it writes batch `seq` and ``A seq`` once `flush()` returned, plus what
  it damaged on purpose and what it dropped by retention. After the remount the store is reopened
  and must hold every acknowledged batch exactly once, the batch in flight all or nothing,
  nothing never sent, pass ``check --deep``, and hold in ``corrupt/`` exactly the parts the
  workload damaged (a cut alone never quarantines anything).
- **The simulator** (`admits`): the writer's file system is a `RecordingFS`, which logs every
  mutating call (with its bytes) before issuing it and its result after, to a file outside the
  mount. The logged sequence is replayed into a `SimFS` holding the tree as it was before the
  writer started, and the tree the kernel left must be one SimFS's crash model allows for that
  sequence. A state it does not allow is a bug in the model (or a lost fsync in the kernel):
  either way the explorer's verdicts rest on it, so it is reported, never smoothed over.

What the cross-check found (see ``tests/crash/test_kernel_power_cut.py``): SimFS kept, per
directory entry, only its current and its last fsynced value, so a value the entry held in
between could never survive there. On ext4 and XFS it can: any fsync commits the journal with
every metadata change made so far, and what follows is lost with the running transaction.
write_atomic cut before its directory fsync leaves ``x.tmp`` beside the old ``x``; a leftover
part removed by recovery and re-created by the next flush comes back absent. SimFS now keeps
those values (`_Dir.history`, its "interim" crash mode, which the explorer draws at every crash
point), and `admits` allows them. A value from before the directory's last fsync is still not
allowed: `admits` names it "stale" (no campaign has met one since), and every difference fails.

Figures go to `lamina.testing.figures` (`KERNEL_LABELS`).

The harness reaches the disk only through `lamina.io.fs.OSFileSystem` (the one door, see
``tests/test_no_direct_io.py``); mount tools run as subprocesses, and the ioctl is issued on a
descriptor of a sentinel file at the mount's root (any file of a file system shuts all of it).
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import errno
import fcntl
import itertools
import json
import os
import posixpath
import random
import select
import signal
import struct
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
from loguru import logger

import lamina
from lamina import names
from lamina.check import check_store
from lamina.errors import CorruptPartError
from lamina.format.part_meta import SUPPORTED_VERSIONS, QuarantineReason
from lamina.format.part_reader import PartReader
from lamina.format.records import RecordError, load_record
from lamina.io.durable import rmtree
from lamina.io.fs import FileSystem, OSFileSystem, WritableFile
from lamina.io.sim import MUTATING_OPS, READ_OPS, SimFS, _Dir, _File
from lamina.testing import figures
from lamina.testing.damage import table_dirs
from lamina.testing.torture import TortureReport, TortureSpec

__all__ = [
    "FS_IOC_GOINGDOWN",
    "FS_TYPES",
    "GOINGDOWN_NOLOGFLUSH",
    "HARNESS_NAMES",
    "KERNEL_LABELS",
    "SENTINEL",
    "Admission",
    "CampaignReport",
    "CutLog",
    "Finding",
    "KernelCutJudge",
    "LoggedOp",
    "LoopMount",
    "Problem",
    "RecordingFS",
    "Replay",
    "Workload",
    "admits",
    "admits_log",
    "calibrate",
    "content_admitted",
    "kv_workload",
    "load_finding",
    "mounted",
    "power_cuts",
    "read_log",
    "replay",
    "save_finding",
    "shutdown",
    "snapshot",
    "unavailable",
]

#: ``_IOR('X', 125, __u32)``: shut the file system down (XFS's ioctl; ext4 implements it too).
FS_IOC_GOINGDOWN = 0x8004587D
#: Shut down without flushing the log: the running journal transaction is lost, as in a power cut
#: (``DEFAULT`` = 0 would freeze the device first, ``LOGFLUSH`` = 1 would commit the log first).
GOINGDOWN_NOLOGFLUSH = 2
#: The file systems a campaign runs on, and the mkfs command of each (the device is appended).
FS_TYPES: dict[str, tuple[str, ...]] = {
    "ext4": ("mkfs.ext4", "-q", "-F"),
    "xfs": ("mkfs.xfs", "-q", "-f"),
}
#: Image sizes: mkfs.xfs refuses file systems under 300 MB. The images are sparse.
_IMAGE_MB = {"ext4": 64, "xfs": 320}
#: The file at the mount's root whose descriptor carries the shutdown ioctl.
SENTINEL = ".lamina-cut"
#: Names at the mount's root that belong to the file system or the harness, not to any store.
HARNESS_NAMES = frozenset({"lost+found", SENTINEL})

#: The figures a campaign adds to `lamina.testing.figures`, and how the summary labels them.
#: The figures this module records (their labels live in `figures.LABELS`).
KERNEL_LABELS: dict[str, str] = {k: v for k, v in figures.LABELS.items() if k.startswith("kernel_")}


# -- the machine ----------------------------------------------------------------------------------
def unavailable(fstype: str) -> str | None:
    """Why real power cuts on `fstype` cannot run here (None: they can).

    Loop mounts need root and a loop device; the formatter must be installed (``xfsprogs`` for
    XFS: CI installs it, see ``.ci/run``)."""
    if fstype not in FS_TYPES:
        raise ValueError(f"unknown file system {fstype!r}; expected one of {sorted(FS_TYPES)}")
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "real power cuts need root (losetup, mount and the shutdown ioctl)"
    if not (Path("/dev/loop-control").exists() or Path("/dev/loop0").exists()):
        return "real power cuts need a loop device (/dev/loop-control or /dev/loop0)"
    for tool in ("losetup", "mount", "umount", FS_TYPES[fstype][0]):
        if _tool(tool) is None:
            return f"{tool} is not installed" + (" (apt-get install xfsprogs)" if "xfs" in tool else "")
    return None


def _tool(name: str) -> str | None:
    """The path of a command, searching sbin too (root's PATH may lack it in a container)."""
    dirs = [*os.environ.get("PATH", "").split(":"), "/usr/local/sbin", "/usr/sbin", "/sbin"]
    for d in dirs:
        candidate = posixpath.join(d, name)
        if d and os.access(candidate, os.X_OK) and Path(candidate).is_file():
            return candidate
    return None


def _run(*cmd: str) -> str:
    """Run a mount tool; a failure raises with its stderr (the reason an operator needs)."""
    exe = _tool(cmd[0]) or cmd[0]
    done = subprocess.run([exe, *cmd[1:]], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout.strip()


def shutdown(fd: int, flags: int = GOINGDOWN_NOLOGFLUSH) -> None:
    """Shut down the file system holding descriptor `fd`: the power cut. Every later call on it
    fails (EIO) and nothing more reaches the device until it is unmounted and mounted again."""
    fcntl.ioctl(fd, FS_IOC_GOINGDOWN, struct.pack("I", flags))


_LIBC = ctypes.CDLL(None, use_errno=True)


def _syncfs(fd: int) -> None:
    """syncfs(2): make everything on the file system of `fd` durable (a clean baseline)."""
    if _LIBC.syncfs(fd) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _shm(fallback: Path) -> Path:
    """/dev/shm when it is a writable tmpfs, else `fallback`."""
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else fallback


class LoopMount:
    """A fresh `fstype` file system on a loop device, mounted under `workdir`.

    Each instance has its own image, loop device and mount point, so parallel test workers
    never share one. `close()` always detaches everything, also after a failure midway."""

    def __init__(
        self, workdir: Path, fstype: str, *, size_mb: int | None = None, image_dir: Path | None = None
    ) -> None:
        why = unavailable(fstype)
        if why is not None:
            raise RuntimeError(why)
        self.fstype = fstype
        self.workdir = Path(tempfile.mkdtemp(prefix=f"lamina-{fstype}-", dir=workdir))
        # The image lives on tmpfs when there is one: the loop device turns every flush of the
        # file system into an fsync of its backing file, which tmpfs answers at once. Where the
        # image lives changes nothing a cut can show: the remount sees exactly what reached the
        # loop device before the shutdown.
        self._image_dir = Path(
            tempfile.mkdtemp(prefix=f"lamina-{fstype}-img-", dir=image_dir or _shm(workdir))
        )
        self.image = str(self._image_dir / f"{fstype}.img")
        self.root = str(self.workdir / "mnt")
        self.device: str | None = None
        self.mounted = False
        self.remounts = 0
        fs = OSFileSystem()
        try:
            fs.mkdir(self.root)
            fs.create(self.image).close()
            os.truncate(self.image, (size_mb or _IMAGE_MB[fstype]) << 20)  # sparse
            self.device = self._attach()
            _run(*FS_TYPES[fstype], self.device)
            self._mount()
            sentinel = fs.create(self.sentinel)
            sentinel.fsync()
            sentinel.close()
            fs.fsync_dir(self.root)
        except BaseException:
            self.close()
            raise

    @property
    def sentinel(self) -> str:
        return posixpath.join(self.root, SENTINEL)

    def _attach(self) -> str:
        # Two workers may race for the same free device: losetup then fails; take the next.
        for attempt in range(10):
            try:
                return _run("losetup", "-f", "--show", self.image)
            except RuntimeError:
                if attempt == 9:
                    raise
                time.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")

    def _mount(self) -> None:
        assert self.device is not None
        _run("mount", "-t", self.fstype, self.device, self.root)
        self.mounted = True

    def _unmount(self) -> None:
        for attempt in range(20):  # a just-killed writer may hold the mount a moment longer
            try:
                _run("umount", self.root)
                self.mounted = False
                return
            except RuntimeError:
                if attempt == 19:
                    raise
                time.sleep(0.05)

    def cut(self) -> None:
        """The power cut, issued from this process."""
        with Path(self.sentinel).open("rb") as f:
            shutdown(f.fileno())

    def sync(self) -> None:
        """Make everything on the file system durable (what a clean shutdown would)."""
        with Path(self.sentinel).open("rb") as f:
            _syncfs(f.fileno())

    def remount(self) -> None:
        """Unmount and mount again: the reboot after a cut (the journal is replayed)."""
        self._unmount()
        self._mount()
        self.remounts += 1

    def close(self) -> None:
        """Unmount (lazily if busy), detach the loop device, remove the image: best effort, all
        of it, so a failed test never leaves a device behind."""
        if self.mounted:
            with contextlib.suppress(RuntimeError):
                self._unmount()
            if self.mounted:
                with contextlib.suppress(RuntimeError):
                    _run("umount", "-l", self.root)
                self.mounted = False
        if self.device is not None:
            with contextlib.suppress(RuntimeError):
                _run("losetup", "-d", self.device)
            self.device = None
        fs = OSFileSystem()
        for d in (self._image_dir, self.workdir):
            with contextlib.suppress(OSError):
                rmtree(fs, str(d))

    def __enter__(self) -> LoopMount:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- the op log -----------------------------------------------------------------------------------
#: Calls a recording file system passes through unlogged: the `FileSystem` protocol's methods
#: that SimFS does not count as mutating (its `MUTATING_OPS` is the authority on that: each of
#: them is a crash point there), plus SimFS's read ops. Anything else a wrapped file system
#: offers (a method added later) is logged, and the replay refuses what it cannot replay.
_READS: frozenset[str] = frozenset(
    ({n for n in vars(FileSystem) if not n.startswith("_")} - MUTATING_OPS - {"lock"}) | READ_OPS
)

Record = dict[str, Any]


class RecordingFS:
    """A `FileSystem` that writes every mutating call to an op log, then issues it.

    Each call gets an index; its record ``{"i", "op", "a"[, "h", "d"]}`` goes to `sink` *before*
    the call (so the log holds every call that may have reached the kernel) and its result
    ``{"r": i}`` or ``{"r": i, "errno": n}`` after. Paths are logged relative to `root` (the
    mount: a SimFS replays them from its own root) or as None outside it. `on_op(index, op,
    phase)` runs right before the call is logged (phase "before") and after its result is
    (phase "after"): named cut points hook in there.

    It wraps by delegation: calls it does not know go to the wrapped file system through
    `__getattr__`, so methods added to `OSFileSystem` later keep working. Such a call is logged
    unless it is a known read (`_READS`); SimFS's `MUTATING_OPS` then says how to replay it, and
    a call SimFS cannot replay makes the replay report it rather than guess."""

    def __init__(
        self,
        inner: FileSystem,
        root: str,
        sink: Callable[[Record], None],
        on_op: Callable[[int, str, str], None] | None = None,
    ) -> None:
        self._inner = inner
        self._root = posixpath.normpath(root)
        self._sink = sink
        self._on_op = on_op
        self._next = 0

    def rel(self, path: str) -> str | None:
        """`path` relative to the mount ("/" is the mount's root), None if outside it."""
        p = posixpath.normpath(os.fspath(path))
        if p == self._root:
            return "/"
        if p.startswith(self._root + "/"):
            return p[len(self._root) :]
        return None

    def _call(self, op: str, paths: Sequence[str], call: Callable[[], Any], **extra: Any) -> Any:
        index = self._next
        self._next += 1
        if self._on_op is not None:
            self._on_op(index, op, "before")
        self._sink({"i": index, "op": op, "a": [self.rel(p) for p in paths], **extra})
        try:
            result = call()
        except OSError as e:
            self._sink({"r": index, "errno": e.errno or 0})
            raise
        self._sink({"r": index})
        if self._on_op is not None:
            self._on_op(index, op, "after")
        return result

    # -- the mutating half of the protocol --
    def create(self, path: str) -> WritableFile:
        index = self._next
        inner = self._call("create", [path], lambda: self._inner.create(path))
        return _RecordingFile(self, inner, index)

    def mkdir(self, path: str) -> None:
        self._call("mkdir", [path], lambda: self._inner.mkdir(path))

    def replace(self, src: str, dst: str) -> None:
        self._call("replace", [src, dst], lambda: self._inner.replace(src, dst))

    def remove(self, path: str) -> None:
        self._call("remove", [path], lambda: self._inner.remove(path))

    def rmdir(self, path: str) -> None:
        self._call("rmdir", [path], lambda: self._inner.rmdir(path))

    def fsync_dir(self, path: str) -> None:
        self._call("fsync_dir", [path], lambda: self._inner.fsync_dir(path))

    def lock(self, path: str) -> Any:
        """Not an op in SimFS. A lock that creates a lock file makes a name outside the model:
        the path is logged so the comparison can leave such a file out (`admits_log`)."""
        self._sink({"lock": self.rel(path)})
        return self._inner.lock(path)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)  # AttributeError if the wrapped one lacks it too
        if name.startswith("_") or not callable(attr) or name in _READS:
            return attr

        def logged(*args: Any) -> Any:
            paths = [a for a in args if isinstance(a, str)]
            rest = [a for a in args if not isinstance(a, str)]
            extra = {"x": [repr(a) for a in rest]} if rest else {}
            return self._call(name, paths, lambda: attr(*args), **extra)

        return logged


class _RecordingFile:
    """The append handle of a `RecordingFS`: its writes (with their bytes) and fsyncs are ops,
    tied to the create that opened it (handles follow the inode through renames)."""

    __slots__ = ("_fs", "_handle", "_inner", "path")

    def __init__(self, fs: RecordingFS, inner: WritableFile, handle: int) -> None:
        self._fs, self._inner, self._handle = fs, inner, handle
        self.path = inner.path

    def write(self, data: bytes | bytearray | memoryview) -> None:
        payload = base64.b64encode(bytes(data)).decode()
        self._fs._call("write", [self.path], lambda: self._inner.write(data), h=self._handle, d=payload)

    def fsync(self) -> None:
        self._fs._call("fsync", [self.path], self._inner.fsync, h=self._handle)

    def close(self) -> None:
        self._inner.close()


@attrs.frozen
class LoggedOp:
    """One logged call. `outcome`: "ok", an errno, or None when the log has no result for it
    (in flight at the cut: it may or may not have happened)."""

    index: int
    op: str
    paths: tuple[str | None, ...]
    handle: int | None = None
    data: bytes = b""
    extra: tuple[str, ...] = ()
    outcome: str | int | None = None

    def describe(self) -> str:
        size = f" {len(self.data)} B" if self.op == "write" else ""
        return f"#{self.index} {self.op} {' -> '.join(str(p) for p in self.paths)}{size} = {self.outcome}"


@attrs.frozen
class CutLog:
    """A writer's log read back: its calls in order, its ledger events, the lock files it took."""

    ops: tuple[LoggedOp, ...]
    events: tuple[Record, ...]
    locks: frozenset[str]

    @property
    def in_flight(self) -> tuple[LoggedOp, ...]:
        return tuple(op for op in self.ops if op.outcome is None)


def read_log(text: str) -> CutLog:
    """Parse an op log. A last line without its newline was cut short by the kill: its call was
    not issued yet (the record precedes the call), so it is dropped."""
    lines = text.split("\n")
    lines.pop()  # "" after a complete last line, or the torn remainder
    pending: dict[int, Record] = {}
    order: list[int] = []
    outcomes: dict[int, str | int] = {}
    events: list[Record] = []
    locks: set[str] = set()
    for line in lines:
        rec = json.loads(line)
        if "i" in rec:
            pending[rec["i"]] = rec
            order.append(rec["i"])
        elif "r" in rec:
            outcomes[rec["r"]] = rec.get("errno", "ok")
        elif "lock" in rec:
            if rec["lock"] is not None:
                locks.add(rec["lock"])
        else:
            events.append(rec)
    ops = []
    for i in order:
        rec = pending[i]
        ops.append(
            LoggedOp(
                index=i,
                op=rec["op"],
                paths=tuple(rec["a"]),
                handle=rec.get("h"),
                data=base64.b64decode(rec["d"]) if "d" in rec else b"",
                extra=tuple(rec.get("x", ())),
                outcome=outcomes.get(i),
            )
        )
    return CutLog(tuple(ops), tuple(events), frozenset(locks))


# -- trees and the replay -------------------------------------------------------------------------
Tree = dict[str, bytes | None]


def snapshot(root: str, *, exclude: Collection[str] = HARNESS_NAMES, fs: FileSystem | None = None) -> Tree:
    """Every path under `root` (relative, "/a/b") -> file bytes, or None for a directory.

    `exclude` names paths left out with their subtrees: names at the root ("lost+found") or
    relative paths ("/store/lamina.lock")."""
    fs = fs or OSFileSystem()
    out: Tree = {}

    def walk(real: str, rel: str) -> None:
        for name in fs.listdir(real):
            r = f"{rel.rstrip('/')}/{name}"
            if r in exclude or (rel == "/" and name in exclude):
                continue
            p = posixpath.join(real, name)
            if fs.is_dir(p):
                out[r] = None
                walk(p, r)
            else:
                out[r] = fs.read_file(p)

    walk(root, "/")
    return out


def _seed_sim(baseline: Mapping[str, bytes | None]) -> SimFS:
    """A SimFS holding `baseline`, every name and byte durable (it was synced before the writer)."""
    sim = SimFS()
    for path in sorted(baseline):
        data = baseline[path]
        if data is None:
            sim.makedirs(path)
        else:
            sim.write_file(path, data)
    return sim


History = Mapping[str, tuple[Any, ...]]


@attrs.frozen
class Replay:
    """A logged sequence replayed into SimFS: the simulator at the cut, every inode each path
    held at some point of the history (`history`), and every call whose result SimFS and the
    kernel disagree on."""

    sim: SimFS
    history: History
    divergences: tuple[str, ...]


def replay(baseline: Mapping[str, bytes | None], log: CutLog, applied: Collection[int] = ()) -> Replay:
    """Replay `log` into a SimFS that holds `baseline` durably.

    A call that failed with EIO did not happen (the shut-down file system refuses everything). A
    call in flight at the cut (no result) happens only if its index is in `applied`. Any other
    call is issued again and must end the same way (succeed, or fail with the same errno): if
    not, the disagreement is listed, as SimFS is then not modelling this kernel."""
    sim = _seed_sim(baseline)
    history: dict[str, list[Any]] = {}
    for path in baseline:
        _held(sim, history, path)
    handles: dict[int, Any] = {}
    divergences: list[str] = []
    for op in log.ops:
        if op.outcome == errno.EIO or (op.outcome is None and op.index not in applied):
            continue
        if op.op == "fsync_dir" and op.paths[0] is None:
            continue  # an ancestor of the mount: SimFS's root is born durable
        if any(p is None for p in op.paths):
            divergences.append(f"{op.describe()}: the writer touched a path outside the mount")
            continue
        try:
            got: str | int = "ok"
            _apply(sim, op, handles, history)
        except OSError as e:
            got = e.errno or 0
        except (ValueError, TypeError, AttributeError) as e:
            divergences.append(f"{op.describe()}: SimFS cannot replay it ({type(e).__name__}: {e})")
            continue
        if op.outcome is not None and got != op.outcome:
            divergences.append(f"{op.describe()}: SimFS answered {got}")
    return Replay(sim, {p: tuple(nodes) for p, nodes in history.items()}, tuple(divergences))


def _held(sim: SimFS, history: dict[str, list[Any]], path: str) -> None:
    """Note the inode `path` names now (SimFS's own lookup), or None if it names nothing, in
    its history."""
    try:
        node = sim._resolve(path)
    except OSError:
        node = None
    held = history.setdefault(path, [])
    if not any(n is node for n in held):
        held.append(node)


def _apply(sim: SimFS, op: LoggedOp, handles: dict[int, Any], history: dict[str, list[Any]]) -> None:
    paths = [p for p in op.paths if p is not None]
    if op.op == "create":
        handles[op.index] = sim.create(paths[0])
        _held(sim, history, paths[0])
    elif op.op in ("write", "fsync"):
        handle = handles.get(op.handle if op.handle is not None else -1)
        if handle is None:
            raise ValueError(f"no open handle #{op.handle}")
        handle.write(op.data) if op.op == "write" else handle.fsync()
    elif op.op == "replace":
        src, dst = paths
        moved = [p for p in sim.tree() if p == src or p.startswith(src + "/")] if sim.is_dir(src) else [src]
        sim.replace(src, dst)
        for p in moved:
            _held(sim, history, p)  # gone from here (unless src is dst)
            _held(sim, history, dst + p[len(src) :])
    elif op.op in ("mkdir", "remove", "rmdir", "fsync_dir"):
        getattr(sim, op.op)(paths[0])
        if op.op != "fsync_dir":
            _held(sim, history, paths[0])
    elif op.op in MUTATING_OPS and not op.extra:
        getattr(sim, op.op)(*paths)
        for p in paths:
            _held(sim, history, p)
    else:
        raise ValueError(f"{op.op!r} is not an operation SimFS replays (teach kernel_cut.replay about it)")


# -- admission ------------------------------------------------------------------------------------
@attrs.frozen
class Problem:
    """One way the real tree differs from every state the model allows at a path.

    kinds: "lost" (the model holds the name or bytes durable; the kernel lost them), "missing"
    (absent, though each value the model allows for the entry is one: its durable and current
    values differ but neither is "no entry", or a rename's other half requires it), "extra" (a
    name the model never shows), "stale" (the entry has a value it held earlier in the history,
    between its directory's last fsync and now: an inode whose bytes or subtree explain what is
    there, or no entry at all), "content" (bytes the model cannot produce from the file's
    history) and "type" (file vs directory)."""

    kind: str
    path: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind} {self.path}: {self.detail}"


@attrs.frozen
class Admission:
    """The verdict of `admits`: `problems` are those of the nearest allowed state (empty when
    admitted)."""

    admitted: bool
    problems: tuple[Problem, ...] = ()
    renames: int = 0

    @property
    def kinds(self) -> frozenset[str]:
        """The kinds of its problems (see `Problem`)."""
        return frozenset(p.kind for p in self.problems)

    def summary(self, limit: int = 6) -> str:
        if self.admitted:
            return "admitted"
        shown = "; ".join(str(p) for p in self.problems[:limit])
        more = f" (+{len(self.problems) - limit} more)" if len(self.problems) > limit else ""
        return f"not admitted: {shown}{more}"


#: Sector sizes of SimFS's torn appends with a zeroed last sector (its "torn" mode).
_TORN_SECTORS = (512, 4096)
#: More pending renames than this at one cut: their 2^n combinations are not enumerated.
_MAX_RENAME_GROUPS = 14


def content_admitted(synced: bytes, data: bytes, got: bytes) -> bool:
    """Whether a file whose durable bytes are `synced` and current bytes `data` may read `got`
    after a power cut, in SimFS's crash model (the union of its modes):

    - `synced` (strict power loss) or `data` (every pending change applied);
    - when `data` extends `synced` (an unsynced append): any prefix of `data` at least as long as
      `synced` (the "random" mode keeps a prefix at byte granularity), or such a prefix whose
      unsynced bytes of its last 512 B or 4 KiB sector read as zeros (the "torn" mode's seeded
      variant: the size was journaled, the sector's data never written).

    Nothing else: never fewer than the synced bytes, never bytes the file did not hold."""
    if got in (synced, data):
        return True
    lo, hi, k = len(synced), len(data), len(got)
    if not (data.startswith(synced) and lo < k <= hi and got.startswith(synced)):
        return False
    if data.startswith(got):
        return True
    for sector in _TORN_SECTORS:
        if k % sector == 0:
            start = max(lo, k - sector)
            if got[:start] == data[:start] and not any(got[start:]):
                return True
    return False


def admits(
    sim: SimFS,
    real: Mapping[str, bytes | None],
    *,
    ignore: Collection[str] = (),
    history: History | None = None,
) -> Admission:
    """Whether SimFS's crash model allows the tree `real` after a power cut of `sim` as it is now.

    The allowed trees are exactly those SimFS's crash modes draw from (`SimFS.crash_state`
    "random" with ``atomic_renames=True``, over every seed, plus "power", "process" and the torn
    contents of "torn"), in the form of the choices they make:

    - every directory entry whose durable value (as of its directory's last `fsync_dir`) and
      current value differ is, independently, either of the two; an entry whose two values agree
      must be there, with that value (names and bytes SimFS calls durable survive);
    - both names of a pending rename take the same choice (renames are atomic, SPEC §11), with
      SimFS's own pairing of them;
    - a chosen file reads one of the contents `content_admitted` allows; a chosen directory is
      judged the same way, entry by entry;
    - no other name exists.

    `real` maps relative paths to bytes (None: a directory), as `snapshot` returns them; paths
    in `ignore` (and below them) are left out on both sides.

    `history` (`Replay.history`: every inode each path held during the replayed sequence, None
    for "no entry") only names what is wrong: an entry the model does not allow but which held
    that value earlier (an inode whose bytes or subtree it shows, or nothing) is "stale", an
    intermediate value of the entry; see `Problem` for the other kinds.

    The verdict is admitted if some combination of the rename choices leaves no problem; if none
    does, the problems of the combination with the fewest (then the mildest, `_SEVERITY`) are
    returned.
    """
    groups: dict[tuple[int, str], int] = sim._rename_groups()
    wanted = sorted(set(groups.values()))
    children: dict[str, set[str]] = {}
    for path in real:
        if _ignored(path, ignore):
            continue
        parent, name = posixpath.split(path)
        children.setdefault(parent, set()).add(name)
    judge = _Walk(real, children, groups, frozenset(ignore), history or {})
    if len(wanted) > _MAX_RENAME_GROUPS:
        raise ValueError(f"{len(wanted)} pending renames at once: too many to enumerate their choices")
    best: list[Problem] | None = None
    for bits in itertools.product((False, True), repeat=len(wanted)):
        judge.renamed = dict(zip(wanted, bits, strict=True))
        problems = judge.directory(sim._root, "/")
        if not problems:
            return Admission(True, (), len(wanted))
        if best is None or _weight(problems) < _weight(best):
            best = problems
    assert best is not None
    return Admission(False, tuple(best), len(wanted))


#: How bad each kind of problem is, to pick the explanation to report among equally short ones:
#: a name holding a value it held earlier in the history ("stale": before its directory's last
#: fsync) is the mildest, and if it explains a tree as well as a loss does, the loss is not what
#: happened.
_SEVERITY = {"stale": 0, "missing": 1, "extra": 1, "content": 1, "type": 1, "lost": 2}


def _weight(problems: Sequence[Problem]) -> tuple[int, int]:
    """Fewest problems first, then the mildest (see `_SEVERITY`)."""
    return len(problems), sum(_SEVERITY.get(p.kind, 1) for p in problems)


def _ignored(path: str, ignore: Collection[str]) -> bool:
    return any(path == i or path.startswith(i.rstrip("/") + "/") for i in ignore)


class _Walk:
    """One pass of `admits` over the model's tree for a fixed choice of every pending rename.

    Reads SimFS's inodes directly (`_Dir.entries` / `synced_entries`, `_File.data` / `synced`):
    the same fields its crash modes read, so the admission follows the model wherever it goes."""

    def __init__(
        self,
        real: Mapping[str, bytes | None],
        children: Mapping[str, set[str]],
        groups: Mapping[tuple[int, str], int],
        ignore: frozenset[str],
        history: History,
    ) -> None:
        self.real, self.children, self.groups = real, children, groups
        self.ignore, self.history = ignore, history
        self.renamed: dict[int, bool] = {}

    def directory(self, d: _Dir, path: str) -> list[Problem]:
        problems: list[Problem] = []
        names_here = set(d.entries) | set(d.synced_entries) | self.children.get(path, set())
        for name in sorted(names_here):
            p = f"{path.rstrip('/')}/{name}"
            if _ignored(p, self.ignore):
                continue
            durable, current = d.synced_entries.get(name), d.entries.get(name)
            group = self.groups.get((id(d), name))
            if group is not None:
                options = [current if self.renamed[group] else durable]
            else:  # durable, current, or a value held in between (SimFS's "interim" crash mode)
                options = d.values(name)
                if all(current is not o for o in options):
                    options.append(current)
            best: list[Problem] | None = None
            # an option that agrees on whether the name exists goes first: on a tie its
            # problems (deeper down) are the ones worth reporting
            options.sort(key=lambda n: (n is not None) == (p in self.real), reverse=True)
            for node in options:
                found = self.node(node, p, durable_too=node is durable and node is current)
                if not found:
                    best = []
                    break
                if best is None or _weight(found) < _weight(best):
                    best = found
            problems += best or []
        return problems

    def unexplained(self, p: str) -> Problem:
        """A name the model shows no entry for: "stale" if an inode it held earlier explains
        what is there, else "extra"."""
        for held in self.history.get(p, ()):
            if held is not None and not self.node(held, p, durable_too=False):
                return Problem("stale", p, "exists, though the model has no entry here: it held this earlier")
        held_any = any(n is not None for n in self.history.get(p, ()))
        what = "it held other content earlier" if held_any else "no call ever made this name"
        return Problem("extra", p, f"exists, though the model has no entry here ({what})")

    def node(self, node: _File | _Dir | None, p: str, *, durable_too: bool) -> list[Problem]:
        have = p in self.real
        if node is None:
            return [] if not have else [self.unexplained(p)]
        if not have:
            if any(n is None for n in self.history.get(p, ())):
                what = "absent, though the model has an entry here: the name held none earlier"
                return [Problem("stale", p, what)]
            if durable_too:
                return [Problem("lost", p, "durable in the model (its directory was fsynced with it)")]
            return [Problem("missing", p, "absent, though every value the model allows here is an entry")]
        got = self.real[p]
        if isinstance(node, _Dir):
            if got is not None:
                return [Problem("type", p, "a file, where the model has a directory")]
            return self.directory(node, p)
        if got is None:
            return [Problem("type", p, "a directory, where the model has a file")]
        synced, data = node.synced, bytes(node.data)
        if content_admitted(synced, data, got):
            return []
        if len(got) < len(synced) or not got.startswith(synced):
            return [
                Problem("lost", p, f"{len(got)} B that do not start with its {len(synced)} fsynced bytes")
            ]
        return [
            Problem(
                "content",
                p,
                f"{len(got)} B, not a state of its history ({len(synced)} B synced, {len(data)} B written)",
            )
        ]


def admits_log(
    baseline: Mapping[str, bytes | None],
    log: CutLog,
    real: Mapping[str, bytes | None],
    *,
    ignore: Collection[str] = (),
) -> tuple[Admission, Replay]:
    """`admits` for a logged sequence: each call in flight at the cut may or may not have
    happened, so the tree is admitted if it is for some subset of them. Returns the verdict
    (the nearest one if none admits) and the replay it was judged against."""
    ignore = set(ignore)
    flying = [op.index for op in log.in_flight]
    best: tuple[Admission, Replay] | None = None
    for r in range(len(flying) + 1):
        for applied in itertools.combinations(flying, r):
            rep = replay(baseline, log, applied)
            # a lock file (a file the lock made, which SimFS never has) is left out; a locked
            # directory is judged like any other
            locks = {p for p in log.locks if isinstance(real.get(p), bytes) and not rep.sim.exists(p)}
            verdict = admits(rep.sim, real, ignore=ignore | locks, history=rep.history)
            if verdict.admitted:
                return verdict, rep
            if best is None or _weight(verdict.problems) < _weight(best[0].problems):
                best = (verdict, rep)
    assert best is not None
    return best


# -- the workload ---------------------------------------------------------------------------------
@attrs.frozen
class Workload:
    """What the writer does between cuts, and how the judge recognises its batches.

    Each round writes and flushes batch `seq` (acknowledged once `flush()` returned), then with
    these probabilities merges every table, damages the newest part and lets a query quarantine
    it, or applies retention at the batch's own time. `timestamp_of(seq)` is the time of every
    row of batch `seq` (one segment per batch: retention drops whole batches) and `part_seqs` the
    batches a part holds (to know which rows a quarantine sets aside); None disables that step.
    """

    spec: TortureSpec
    timestamp_of: Callable[[int], int] | None = None
    part_seqs: Callable[[PartReader], set[int]] | None = None
    damage_file: str = ""
    merge: float = 0.35
    quarantine: float = 0.15
    retention: float = 0.15
    rounds: int = 400

    @property
    def engine(self) -> lamina.Engine:
        return self.spec.engine

    def segment_of(self, seq: int) -> int:
        assert self.timestamp_of is not None
        ts = self.timestamp_of(seq)
        return ts - ts % self.engine.segment_interval_ns

    def dropped_by(self, seq: int, now_ns: int) -> bool:
        """Whether retention at `now_ns` drops the segment of batch `seq` (as `apply_retention`)."""
        retention = self.engine.retention_ns
        if retention is None:
            return False
        return self.segment_of(seq) + self.engine.segment_interval_ns <= now_ns - retention


def kv_workload(rows: int = 8) -> Workload:
    """The kv reference engine with a retention of two segments, four batches per segment."""
    from lamina.testing.kv import KV, kv_batch

    day = KV.segment_interval_ns
    engine = attrs.evolve(KV, retention_ns=2 * day)
    t0 = 1_700_000_000_000_000_000 // day * day

    def ts(seq: int) -> int:
        return t0 + seq * (day // 4)

    def batch(seq: int) -> dict[str, Any]:
        keys = [b"s%07d-%02d" % (seq, j) for j in range(rows)]
        return kv_batch(keys, [ts(seq) + j for j in range(rows)])

    def part_seqs(reader: PartReader) -> set[int]:
        out: set[int] = set()
        for i in range(len(reader.blocks.keys)):
            out.update(int(k[1:8]) for k in reader.read_block(i, columns=["key"])["key"])
        return out

    spec = TortureSpec(
        engine=engine,
        make_batch=batch,
        batch_rows=lambda seq: rows,
        rows_of=lambda h: list(h.query()),
        seq_of=lambda row: int(row[0][1:8]),
    )
    return Workload(spec, timestamp_of=ts, part_seqs=part_seqs, damage_file="values.bin")


# -- the writer (a forked child) ------------------------------------------------------------------
class _LogFile:
    """The writer's log: one record a line, each line one write(2) to a file outside the mount,
    unbuffered, so a SIGKILL loses at most the line being written."""

    def __init__(self, path: str) -> None:
        self._file = OSFileSystem().create(path)

    def __call__(self, rec: Record) -> None:
        self._file.write((json.dumps(rec, separators=(",", ":")) + "\n").encode())


def _writer(
    work: Workload,
    mount: LoopMount,
    store: str,
    log_path: str,
    seq: int,
    seed: int,
    named: tuple[int, str] | None,
) -> None:
    """The child: never returns (cut and killed, or exits after `work.rounds` batches)."""
    emit = _LogFile(log_path)
    emit({"ev": "S"})  # a writer starts: recovery runs next (on a cut state, every few cuts)
    cut_handle = Path(mount.sentinel).open("rb")  # noqa: SIM115 - held until the child dies
    barriers = [0]

    def cut(where: str) -> None:
        emit({"ev": "cut", "at": where})
        shutdown(cut_handle.fileno())
        os.kill(os.getpid(), signal.SIGKILL)

    def on_op(index: int, op: str, phase: str) -> None:
        if named is None or op not in ("fsync", "fsync_dir"):
            return
        target, when = named
        if phase == "before":
            barriers[0] += 1
        if barriers[0] == target and phase == when:
            cut(f"{when} barrier {target} (op #{index}, {op})")

    rng = random.Random(seed)
    fs = RecordingFS(OSFileSystem(), mount.root, emit, on_op)
    path = posixpath.join(mount.root, store)
    registry = work.spec.registry()
    st = lamina.Store(path, fs=fs, registry=registry, background=False)
    h = st.engine(work.engine.name)
    emit({"ev": "R"})
    for _ in range(work.rounds):
        emit({"ev": "W", "seq": seq, "t": time.perf_counter()})
        h.write(work.spec.make_batch(seq))
        h.flush()
        emit({"ev": "A", "seq": seq})
        seq += 1
        r = rng.random()
        if r < work.merge:
            h.merge_now()
        elif r < work.merge + work.quarantine and work.part_seqs is not None and work.damage_file:
            st, h = _damage_and_quarantine(work, st, h, fs, path, registry, emit)
        elif r < work.merge + work.quarantine + work.retention and work.timestamp_of is not None:
            now = work.timestamp_of(seq - 1)
            emit({"ev": "X", "now": now})
            h.apply_retention(now)
            emit({"ev": "Y"})
    os._exit(0)


def _damage_and_quarantine(
    work: Workload,
    st: lamina.Store,
    h: lamina.EngineHandle,
    fs: RecordingFS,
    path: str,
    registry: Any,
    emit: Callable[[Record], None],
) -> tuple[lamina.Store, lamina.EngineHandle]:
    """Damage one byte of the newest part's data file (durably, through the logged file system,
    as bit rot would be: already on the medium), reopen, and query until the query meets the
    damage and quarantines the part. "D" names the part and its batches before; "Q" after."""
    from lamina.testing.damage import corrupt_bytes

    assert work.part_seqs is not None
    tables = [t for t in h.tables() if t.live_parts]
    if not tables:
        return st, h
    table = max(tables, key=lambda t: t.segment_start)
    part = max(table.live_parts, key=lambda p: p.part_id)
    try:
        seqs = sorted(work.part_seqs(part.reader))
    except CorruptPartError:  # damaged already: an earlier writer's damage outlived its cut
        return st, h
    rel_table = posixpath.relpath(table.path, path)
    emit({"ev": "D", "table": rel_table, "part": part.name, "seqs": seqs})
    st.close()  # a real disk shows the damage only to descriptors opened after it
    target = posixpath.join(path, rel_table, part.name, work.damage_file)
    size = fs.file_size(target)
    old = fs.read_file(target)[size // 2]
    corrupt_bytes(fs, target, size // 2, bytes([old ^ 0xFF]))
    st = lamina.Store(path, fs=fs, registry=registry, background=False)
    h = st.engine(work.engine.name)
    detected = False
    for _ in range(3):
        try:
            work.spec.rows_of(h)
            break
        except CorruptPartError as e:
            detected = detected or posixpath.basename(e.part) == part.name
    emit({"ev": "Q", "table": rel_table, "part": part.name, "detected": detected})
    return st, h


def _spawn(
    work: Workload,
    mount: LoopMount,
    store: str,
    log_path: str,
    seq: int,
    seed: int,
    named: tuple[int, str] | None,
) -> int:
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child's coverage is not collected
        try:
            _writer(work, mount, store, log_path, seq, seed, named)
        except BaseException as e:
            with contextlib.suppress(Exception):
                _LogFile(log_path + ".err")({"ev": "E", "error": f"{type(e).__name__}: {e}"[:400]})
        finally:
            os._exit(70)
    return pid


# -- the judge ------------------------------------------------------------------------------------
@attrs.define
class KernelCutJudge:
    """The ledger of one store across cuts, and its verdict after each (see the module docstring).

    What a check finds becomes the fact the next one builds on: a batch found present must stay,
    a batch found absent (the one in flight, a quarantined or dropped one) must never come back,
    and every part found in corrupt/ must stay there until retention drops its segment."""

    work: Workload
    path: str
    present: set[int] = attrs.field(factory=set)
    gone: set[int] = attrs.field(factory=set)
    corrupt: set[tuple[str, str]] = attrs.field(factory=set)
    next_seq: int = 0

    def check(self, events: Sequence[Record], report: CampaignReport) -> list[str]:
        """Reopen the store after a cut and judge it against this cut's events; the problems."""
        work, spec = self.work, self.work.spec
        sent = max((e["seq"] for e in events if e["ev"] == "W"), default=self.next_seq - 1)
        acked = {e["seq"] for e in events if e["ev"] == "A"}
        written = {e["seq"] for e in events if e["ev"] == "W"}
        problems: list[str] = []
        if stray := sorted(written - acked - _last_sent(events)):
            problems.append(
                f"batches {stray} were sent but not acknowledged, yet not the last one a writer sent"
            )
        doomed = {(e["table"], e["part"]): set(e["seqs"]) for e in events if e["ev"] == "D"}
        finished = {(e["table"], e["part"]) for e in events if e["ev"] == "Q"}
        for e in events:
            if e["ev"] == "Q" and not e["detected"]:
                problems.append(f"part {e['table']}/{e['part']} was damaged, yet a query served it")
        # A retention drop promises nothing durable: `apply_retention` renames each expired
        # segment to *.dropping, fsyncs, then removes it, and a failure (the cut) is only
        # logged ("the next open finishes it"). So each segment it meant to drop is, after a
        # cut, whole or gone: never half.
        drop_now = max((e["now"] for e in events if e["ev"] == "X"), default=None)
        candidates = self.present | acked | written

        def dropping(seq: int) -> bool:
            return drop_now is not None and work.dropped_by(seq, drop_now)

        if not Path(self.path).exists():  # a cut before the store's own name was durable
            self.gone |= candidates
            self.next_seq = max(self.next_seq, sent + 1)
            if acked | self.present:
                problems.append(
                    f"the store directory vanished, and {len(acked | self.present)} batches with it"
                )
            return problems
        try:
            store = lamina.Store(self.path, registry=spec.registry(), background=False)
        except Exception as e:
            return [*problems, f"reopen failed: {type(e).__name__}: {e}"]
        met: list[str] = []
        try:
            h = store.engine(work.engine.name)
            rows: list[Any] = []
            for _ in range(len(doomed) + 2):
                try:
                    rows = spec.rows_of(h)
                    break
                except CorruptPartError as e:  # the damage survived, its quarantine did not
                    met.append(posixpath.basename(e.part))
        finally:
            store.close()
        counts = Counter(spec.seq_of(row) for row in rows)
        held = self._corrupt_parts()
        doomed_parts = {part for _, part in doomed}
        if stray_parts := sorted(set(met) - doomed_parts):
            problems.append(f"a query met damage in parts {stray_parts}, which the workload never damaged")
        # which doomed parts ended up set aside decides whether their batches may be there
        aside = {key for key in doomed if key in held}
        must: set[int] = set()
        for seq in sorted(candidates):
            if any(seq in doomed[key] for key in aside):
                if counts.get(seq, 0):
                    problems.append(f"batch {seq} has {counts[seq]} rows, but its part was quarantined")
            elif (seq in acked or seq in self.present) and not dropping(seq):
                must.add(seq)
        for seq in sorted(self.gone):
            if counts.get(seq, 0):
                problems.append(f"batch {seq} came back ({counts[seq]} rows) after a check found it gone")
        by_segment: dict[int, set[bool]] = {}
        for seq in candidates:  # the batches that must be there but for the drop
            if (
                dropping(seq)
                and (seq in acked or seq in self.present)
                and not any(seq in doomed[k] for k in aside)
            ):
                by_segment.setdefault(work.segment_of(seq), set()).add(bool(counts.get(seq, 0)))
        problems += [f"segment {s} was half dropped" for s, seen in by_segment.items() if len(seen) > 1]
        torture = TortureReport()
        problems += spec.judge().judge(rows, sent, must, torture)
        report.acked += len(must)
        report.lost_rows += torture.lost_rows

        def segment_dropping(key: tuple[str, str]) -> bool:
            """Whether the drop may have taken the part's table, and its corrupt/ with it."""
            start = names.parse_segment_name(key[0].split("/")[-2]) if key[0].count("/") >= 2 else None
            retention, interval = work.engine.retention_ns, work.engine.segment_interval_ns
            if start is None or retention is None or drop_now is None:
                return False
            return start + interval <= drop_now - retention

        expected = {key for key in self.corrupt | finished if not segment_dropping(key)}
        allowed = self.corrupt | set(doomed)
        if unexpected := sorted(held - allowed):
            report.quarantined += len(unexpected)
            problems.append(f"parts {unexpected} are in corrupt/: a power cut alone must never quarantine")
        if missing := sorted(expected - held):
            problems.append(
                f"quarantined parts {missing} are not in corrupt/ (set aside must mean never deleted)"
            )
        for key in sorted(held):
            reason = posixpath.join(self.path, key[0], names.CORRUPT_DIR, key[1], names.REASON)
            try:
                load_record(OSFileSystem().read_file(reason), QuarantineReason, SUPPORTED_VERSIONS)
            except (OSError, RecordError) as e:
                problems.append(f"quarantined part {key[1]} has no valid {names.REASON}: {e}")
        deep = check_store(self.path, deep=True, registry=spec.registry())
        if not deep.ok:
            problems.append(f"check --deep: {[str(p) for p in deep.damage][:3]}")
        present_now = {s for s in candidates if counts.get(s, 0)}
        self.gone |= candidates - present_now
        self.present = present_now
        self.corrupt = held
        self.next_seq = max(self.next_seq, sent + 1)
        return problems

    def _corrupt_parts(self) -> set[tuple[str, str]]:
        """(table relative to the store, part) of every entry in every table's corrupt/."""
        fs = OSFileSystem()
        out: set[tuple[str, str]] = set()
        root = posixpath.join(self.path, self.work.engine.name)
        for dataset in fs.listdir(root) if fs.is_dir(root) else []:
            for table in table_dirs(fs, self.path, self.work.engine.name, dataset):
                cdir = posixpath.join(table, names.CORRUPT_DIR)
                if fs.is_dir(cdir):
                    rel = posixpath.relpath(table, self.path)
                    out |= {(rel, n) for n in fs.listdir(cdir)}
        return out


def _last_sent(events: Sequence[Record]) -> set[int]:
    """The last batch each writer sent ("S" starts a writer): the only ones that may be in
    flight, unacknowledged, when its cut came."""
    last: set[int] = set()
    current: int | None = None
    for e in events:
        if e["ev"] == "S" and current is not None:
            last.add(current)
            current = None
        elif e["ev"] == "W":
            current = e["seq"]
    if current is not None:
        last.add(current)
    return last


# -- the campaign ---------------------------------------------------------------------------------
@attrs.frozen
class Finding:
    """A cut whose surviving tree SimFS's crash model does not allow (or cannot replay)."""

    cut: int
    where: str
    verdict: str
    log: str
    #: The kinds of `Problem` found (see there), plus
    #: "divergence" when the replay disagreed with the kernel on a call's result.
    kinds: frozenset[str] = frozenset()

    def __str__(self) -> str:
        return f"cut {self.cut} ({self.where}): {self.verdict}\n    op log kept at {self.log}"


@attrs.define
class CampaignReport:
    fstype: str
    cuts: int = 0
    named: int = 0
    acked: int = 0
    lost_rows: int = 0
    quarantined: int = 0
    set_aside: int = 0
    drops: int = 0
    ops: int = 0
    admitted: int = 0
    in_flight: int = 0
    #: Batches the writers saw acknowledged (`acked` counts those checked after each cut).
    batches: int = 0
    #: Calls the writer saw fail with EIO: it ran on after a cut (which the campaign prevents:
    #: a shut-down file system's answers are not a power cut's, see `_stop_then_cut`).
    after_cut: int = 0
    seconds: float = 0.0
    not_admitted: list[Finding] = attrs.field(factory=list)
    problems: list[str] = attrs.field(factory=list)

    def summary(self) -> str:
        return (
            f"{self.fstype}: {self.cuts} cuts ({self.named} at a named fsync) in {self.seconds:.1f} s, "
            f"{self.batches} batches acknowledged, {self.acked} checked after a cut, "
            f"{self.lost_rows} rows lost, "
            f"{self.quarantined} parts quarantined by a cut, {self.set_aside} set aside by the workload, "
            f"{self.drops} retention drops, {self.ops} ops replayed into SimFS "
            f"({self.after_cut} answered after a cut), "
            f"{self.admitted} states admitted, {len(self.not_admitted)} not, {len(self.problems)} problems"
        )


def _marker(ev: str, seq: int) -> str:
    """How the writer's log spells event `ev` of batch `seq`, up to the character after the
    number (so batch 5 is not mistaken for batch 50): "W" records go on with a time, "A" end."""
    return f'"ev":"{ev}","seq":{seq}' + ("," if ev == "W" else "}")


def _batch_time(events: Sequence[Record], old: float) -> float:
    """The running estimate of one round's time (a batch and what follows its flush), from the
    writer's start times of consecutive batches ("t" of its "W" events)."""
    starts = [e["t"] for e in events if e["ev"] == "W" and "t" in e]
    if len(starts) < 2:
        return old
    return 0.7 * old + 0.3 * (starts[-1] - starts[0]) / (len(starts) - 1)


def _wait_for(log: str, marker: str, pid: int, limit_s: float) -> float | None:
    """Seconds until `marker` shows in the writer's log (polled), or None if the writer exited
    or `limit_s` passed first."""
    fs = OSFileSystem()
    start = time.perf_counter()
    while time.perf_counter() - start < limit_s:
        if fs.exists(log) and marker in fs.read_file(log).decode(errors="replace"):
            return time.perf_counter() - start
        if os.waitpid(pid, os.WNOHANG)[0]:
            return None
        select.select([], [], [], 0.001)
    return None


def calibrate(
    work: Workload, mount: LoopMount, workdir: Path, *, acks: int = 3, limit_s: float = 30.0
) -> tuple[float, float]:
    """(seconds from fork until a writer on this mount has opened the store, seconds from then
    until its `acks`-th acknowledgement). It is then killed, without a cut, and its store
    removed. Raises if it gets nowhere in `limit_s`: the cuts would prove nothing."""
    log = str(workdir / "calibration.log")
    pid = _spawn(work, mount, "calibration", log, 0, 0, None)
    fs = OSFileSystem()
    try:
        opened = _wait_for(log, '"ev":"R"', pid, limit_s)
        acked = _wait_for(log, _marker("A", acks - 1), pid, limit_s) if opened is not None else None
        if opened is None or acked is None:
            err = fs.read_file(log + ".err").decode() if fs.exists(log + ".err") else "no error reported"
            raise RuntimeError(f"kernel-cut calibration: the writer acknowledged too little ({err.strip()})")
        return opened, acked
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        for p in (log, log + ".err"):
            if fs.exists(p):
                fs.remove(p)
        rmtree(fs, posixpath.join(mount.root, "calibration"))
        mount.sync()


def power_cuts(
    work: Workload,
    mount: LoopMount,
    workdir: Path,
    *,
    cuts: int,
    seed: int = 0,
    named_every: int = 2,
    barriers: int = 40,
    cuts_per_store: int = 40,
    recover_in_writer_every: int = 3,
    during_open: float = 0.25,
    depth: int = 6,
    keep_logs: Path | None = None,
) -> CampaignReport:
    """Cut the power under a writer `cuts` times and judge every cut by the ledger and by SimFS
    (see the module docstring).

    Every `named_every`-th cut comes right before or after one of the writer's first `barriers`
    fsyncs, in turn. The others come at a random moment: with probability `during_open` while
    the writer opens the store (up to 1.5 times as long as its last open took), else while it
    works on its k-th batch, k drawn from 0..`depth`-1: the parent waits for the writer to start
    that batch, then up to 1.5 batch-times more (a batch-time is measured as the campaign goes:
    a loaded machine slows the writer, and a cut measured in seconds would then land ever
    earlier in its work).

    After every `recover_in_writer_every`-th cut the store is not reopened here: the next writer
    runs recovery on what the cut left, so its own cut may land inside that recovery (SPEC §10.7:
    recovery survives a crash at any of its steps); the ledger of both writers is judged after.
    A store is replaced by a fresh one every `cuts_per_store` cuts. The op log and the trees of a
    cut that SimFS does not admit, or that breaks a rule, are kept in `keep_logs` (default:
    `workdir`) and named in the report (`load_finding` reads them back)."""
    rng = random.Random(seed)
    keep = keep_logs or workdir
    open_s, batches_s = calibrate(work, mount, workdir)
    batch_s = batches_s / 3
    report = CampaignReport(mount.fstype)
    fs = OSFileSystem()
    t0 = time.perf_counter()
    judge = KernelCutJudge(work, "")
    store = ""
    pending: list[Record] = []  # events of writers whose cut is judged with the next one's
    next_seq = 0
    for i in range(cuts):
        if i % cuts_per_store == 0:
            if store:
                rmtree(fs, posixpath.join(mount.root, store))
            store = f"store-{i // cuts_per_store}"
            judge = KernelCutJudge(work, posixpath.join(mount.root, store))
            next_seq = 0
            mount.sync()
        named = i % named_every == 0
        k = i // named_every
        at = (1 + (k // 2) % barriers, ("before", "after")[k % 2]) if named else None
        exclude = {*HARNESS_NAMES, f"/{store}/{names.STORE_LOCK}"}
        baseline = snapshot(mount.root, exclude=exclude)
        log_path = str(workdir / f"cut-{i}.log")
        pid = _spawn(work, mount, store, log_path, next_seq, rng.randrange(2**32), at)
        where = f"{at[1]} barrier {at[0]}" if at else "random"
        if at is None:
            if rng.random() < during_open:  # while it opens the store: in its recovery, often
                delay = rng.uniform(0, 1.5 * open_s)
                time.sleep(delay)
                where = f"random, {delay * 1000:.0f} ms after fork"
            else:  # while it works on its k-th batch (or what follows that batch's flush)
                k = rng.randrange(depth)
                started = _wait_for(log_path, _marker("W", next_seq + k), pid, 30.0)
                if k == 0 and started is not None:
                    open_s = started
                delay = rng.uniform(0, 1.5 * batch_s)
                time.sleep(delay)
                where = f"random, {delay * 1000:.0f} ms into batch {next_seq + k}"
            _stop_then_cut(pid, mount, report, f"cut {i}", log_path)
        else:
            _, status = os.waitpid(pid, 0)
            if not (os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL):
                # it ended before its barrier: cut now, on an idle file system
                mount.cut()
                if os.WIFEXITED(status) and os.WEXITSTATUS(status) != 0:
                    report.problems.append(
                        f"cut {i}: the writer failed before its cut: {_error_of(log_path)}"
                    )
        mount.remount()
        report.cuts += 1
        report.named += named
        real = snapshot(mount.root, exclude=exclude)
        log = read_log(fs.read_file(log_path).decode() if fs.exists(log_path) else "")
        report.ops += len(log.ops)
        report.in_flight += len(log.in_flight)
        report.after_cut += sum(op.outcome == errno.EIO for op in log.ops)
        report.set_aside += sum(e["ev"] == "Q" for e in log.events)
        report.drops += sum(e["ev"] == "Y" for e in log.events)
        verdict, rep = admits_log(baseline, log, real, ignore=exclude)
        kept = str(keep / f"{mount.fstype}-seed{seed}-cut{i}.log")
        if verdict.admitted and not rep.divergences:
            report.admitted += 1
        else:
            text = verdict.summary() if not verdict.admitted else "admitted"
            if rep.divergences:
                text += "; replay diverged: " + "; ".join(rep.divergences[:3])
            kinds = verdict.kinds | ({"divergence"} if rep.divergences else set())
            report.not_admitted.append(Finding(i, where, text, kept, frozenset(kinds)))
            logger.warning("kernel cut {} on {}: {}", i, mount.fstype, text)
        batch_s = _batch_time(log.events, batch_s)
        report.batches += sum(e["ev"] == "A" for e in log.events)
        events = [*pending, *log.events]
        next_seq = max([next_seq, *(e["seq"] + 1 for e in events if e["ev"] == "W")])
        last_of_store = i == cuts - 1 or (i + 1) % cuts_per_store == 0
        if recover_in_writer_every and i % recover_in_writer_every == 0 and not last_of_store:
            pending, problems = events, []  # the next writer recovers this cut's state
        else:
            pending, problems = [], judge.check(events, report)
        if problems:
            report.problems.append(
                f"cut {i} ({mount.fstype}, seed {seed}, {where}): {'; '.join(problems)} (op log: {kept})"
            )
        if problems or not verdict.admitted or rep.divergences:
            fs.replace(log_path, kept)
            save_finding(kept + ".trees.json", baseline, real, exclude)
        elif fs.exists(log_path):
            fs.remove(log_path)
        if fs.exists(log_path + ".err"):
            fs.remove(log_path + ".err")
        mount.sync()
    report.seconds = time.perf_counter() - t0
    figures.add(
        **{f"kernel_cuts_{mount.fstype}": report.cuts},
        kernel_cuts_named=report.named,
        kernel_acked_batches=report.acked,
        kernel_lost_rows=report.lost_rows,
        kernel_quarantined=report.quarantined,
        kernel_ops_replayed=report.ops,
        kernel_not_admitted=len(report.not_admitted),
        kernel_not_admitted_stale=sum(f.kinds == {"stale"} for f in report.not_admitted),
    )
    return report


def save_finding(path: str, baseline: Tree, real: Tree, exclude: Collection[str]) -> None:
    """Save the trees before and after a cut (at `path`, by convention its op log's path plus
    ".trees.json"), so `load_finding` can judge the same state again: a finding must be
    reproducible away from the machine that found it."""

    def enc(tree: Tree) -> dict[str, str | None]:
        return {p: None if d is None else base64.b64encode(d).decode() for p, d in tree.items()}

    out = OSFileSystem().create(path)
    try:
        out.write(
            json.dumps({"baseline": enc(baseline), "real": enc(real), "exclude": sorted(exclude)}).encode()
        )
    finally:
        out.close()


def load_finding(log_path: str) -> tuple[Tree, CutLog, Tree, set[str]]:
    """(baseline, log, real tree, exclude) of a finding kept by `power_cuts`: pass them to
    `admits_log` to judge it again."""
    fs = OSFileSystem()
    trees = json.loads(fs.read_file(log_path + ".trees.json"))

    def dec(tree: dict[str, str | None]) -> Tree:
        return {p: None if d is None else base64.b64decode(d) for p, d in tree.items()}

    log = read_log(fs.read_file(log_path).decode())
    return dec(trees["baseline"]), log, dec(trees["real"]), set(trees["exclude"])


def _stop_then_cut(pid: int, mount: LoopMount, report: CampaignReport, label: str, log_path: str) -> None:
    """A random cut: stop the writer, cut the power, kill it.

    The writer is stopped first (and the stop waited for) because a shut-down file system does
    not always refuse: XFS answers fsync of a directory with success once the shutdown has
    unpinned its log items, without writing anything. A writer left running after the cut would
    then acknowledge a flush no power cut could ever have let it acknowledge. SIGSTOP takes
    effect only between system calls, so every call the writer saw return did return before the
    cut, and none returns after it."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGSTOP)
    _, status = os.waitpid(pid, os.WUNTRACED)
    exited = not os.WIFSTOPPED(status)
    if exited and not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0):
        report.problems.append(f"{label}: the writer failed before the cut: {_error_of(log_path)}")
    mount.cut()
    if not exited:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def _error_of(log_path: str) -> str:
    fs = OSFileSystem()
    err = log_path + ".err"
    return fs.read_file(err).decode().strip() if fs.exists(err) else "no error reported"


@contextlib.contextmanager
def mounted(fstype: str, workdir: Path) -> Iterator[LoopMount]:
    """A `LoopMount` for the duration of the block, always detached after."""
    m = LoopMount(workdir, fstype)
    try:
        yield m
    finally:
        m.close()
