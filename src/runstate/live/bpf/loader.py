"""Load the in-kernel accounting program through the system libbpf, with ctypes.

The object ``runstate.bpf.o`` (built by ``build.sh`` from ``runstate.bpf.c``)
is shipped in the package; loading it needs only ``libbpf.so.1`` (libbpf 1.x,
present wherever bpftool or most eBPF tools are installed), root and the
kernel's BTF.  Nothing is pinned: the programs, links and maps belong to this
process's file descriptors, so the kernel releases all of them when it exits,
however it exits.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import mmap
import os
import struct
from dataclasses import dataclass
from enum import IntEnum
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from runstate.errors import EnvironmentProblem

OBJECT_NAME = "runstate.bpf.o"
BTF_PATH = "/sys/kernel/btf/vmlinux"
#: the programs attached to the scheduler tracepoints (their kernel names)
TRACEPOINT_PROGRAMS = ("rs_switch", "rs_tick", "rs_wakeup", "rs_wakeup_new", "rs_fork")
INIT_PROGRAM = "rs_init_members"
SET_STATE_PROGRAM = "rs_set_state"
RELEASE_PROGRAM = "rs_release"
#: every program name this tool loads (tests look for leftovers by these)
PROGRAM_NAMES = (*TRACEPOINT_PROGRAMS, INIT_PROGRAM, SET_STATE_PROGRAM, RELEASE_PROGRAM)
MAP_NAMES = ("members", "groups", "config", "tallies")

BPF_ANY = 0
BPF_NOEXIST = 1
BPF_F_LOCK = 4

#: value layouts of the maps (see struct rs_group / rs_member in runstate.bpf.c)
GROUP_DTYPE = np.dtype([
    ("lock", "<u4"), ("members", "<u4"), ("n_running", "<i4"), ("n_runnable", "<i4"),
    ("n_blocked", "<i4"), ("n_unknown", "<i4"), ("state", "<i4"), ("held", "<u4"),
    ("since", "<u8"), ("ns", "<u8", (7,)),
    ("missed", "<u8"), ("changes", "<u8"), ("first_ns", "<u8"),
    ("member_ns", "<u8", (3,)), ("mlast", "<u8"),
])
MEMBER_DTYPE = np.dtype([("group", "<u4"), ("state", "<u4"), ("since", "<u8"),
                         ("ns", "<u8", (4,)), ("last_in", "<u8")])


class ForkGrouping(IntEnum):
    """Where a task forked by a member goes (config slot 0 of the program)."""

    JOIN_PARENT = 0
    #: a new process forms its own group (keyed by its tgid)
    NEW_PROCESS = 1
    #: every new task forms its own group (keyed by its tid)
    NEW_THREAD = 2


class MemberCode(IntEnum):
    """Member states as the program stores them."""

    RUNNING = 0
    RUNNABLE = 1
    BLOCKED = 2
    #: in the table, not counted yet
    UNSEEN = 3
    #: counted, state not known until its next event (its domain is lost meanwhile)
    UNKNOWN = 4


#: slots of the ``tallies`` map (see runstate.bpf.c), which this process maps
T_DROPPED, T_NEW_GROUPS, T_SHOWN_UNTIL = 0, 1, 2


@dataclass(frozen=True, slots=True)
class Counters:
    """One read of both tables: numpy records keyed by group id / tid."""

    group_ids: npt.NDArray[np.uint32]
    groups: npt.NDArray[np.void]
    member_ids: npt.NDArray[np.uint32]
    members: npt.NDArray[np.void]
    #: members a full table could not take
    dropped_members: int


@dataclass(slots=True)
class _Buffer:
    """Keys and values of a whole table, with their addresses (made once: a table of
    65536 entries is megabytes, and numpy's ctypes view costs more than a lookup)."""

    keys: npt.NDArray[np.uint32]
    values: npt.NDArray[np.void]
    keys_at: int
    values_at: int

    @classmethod
    def make(cls, dtype: np.dtype[np.void], capacity: int) -> _Buffer:
        keys, values = np.zeros(capacity, np.uint32), np.zeros(capacity, dtype)
        return cls(keys, values, keys.ctypes.data, values.ctypes.data)


class _TestRunOpts(ctypes.Structure):
    """``struct bpf_test_run_opts`` (libbpf 1.x)."""

    _fields_ = [("sz", ctypes.c_size_t), ("data_in", ctypes.c_void_p),
                ("data_out", ctypes.c_void_p), ("data_size_in", ctypes.c_uint32),
                ("data_size_out", ctypes.c_uint32), ("ctx_in", ctypes.c_void_p),
                ("ctx_out", ctypes.c_void_p), ("ctx_size_in", ctypes.c_uint32),
                ("ctx_size_out", ctypes.c_uint32), ("retval", ctypes.c_uint32),
                ("repeat", ctypes.c_int), ("duration", ctypes.c_uint32),
                ("flags", ctypes.c_uint32), ("cpu", ctypes.c_uint32),
                ("batch_size", ctypes.c_uint32)]


class _StateArg(ctypes.Structure):
    _fields_ = [("tid", ctypes.c_uint32), ("state", ctypes.c_uint32)]


class _ReleaseArg(ctypes.Structure):
    _fields_ = [("group", ctypes.c_uint32)]


class _BatchOpts(ctypes.Structure):
    _fields_ = [("sz", ctypes.c_size_t), ("elem_flags", ctypes.c_uint64),
                ("flags", ctypes.c_uint64)]


_PRINT_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)


def object_path() -> Path:
    """The shipped object, or the one named by ``RUNSTATE_BPF_OBJECT``."""
    override = os.environ.get("RUNSTATE_BPF_OBJECT")
    if override:
        return Path(override)
    return Path(str(resources.files("runstate.live.bpf").joinpath(OBJECT_NAME)))


def missing_requirement() -> str | None:
    """Why the bpf source cannot load here (None when it should)."""
    if os.geteuid() != 0:
        return "bpf needs root"
    if not os.path.exists(BTF_PATH):
        return f"bpf needs the kernel's BTF ({BTF_PATH} is missing)"
    if not object_path().is_file():
        return f"bpf object {object_path()} is missing (build it with live/bpf/build.sh)"
    if _find_libbpf() is None:
        return "bpf needs libbpf.so.1 (Debian: libbpf1)"
    return None


def _find_libbpf() -> str | None:
    for name in ("libbpf.so.1", ctypes.util.find_library("bpf")):
        if not name:
            continue
        try:
            ctypes.CDLL(name)
        except OSError:
            continue
        return name
    return None


class _Libbpf:
    """The libbpf functions used, with their C signatures."""

    def __init__(self, name: str) -> None:
        lib = ctypes.CDLL(name, use_errno=True)
        vp, ci, cu, cs = ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32, ctypes.c_char_p
        sigs: dict[str, tuple[object, list[object]]] = {
            "bpf_object__open_file": (vp, [cs, vp]),
            "bpf_object__load": (ci, [vp]),
            "bpf_object__close": (None, [vp]),
            "bpf_object__find_program_by_name": (vp, [vp, cs]),
            "bpf_object__find_map_by_name": (vp, [vp, cs]),
            "bpf_map__set_max_entries": (ci, [vp, cu]),
            "bpf_map__fd": (ci, [vp]),
            "bpf_program__attach": (vp, [vp]),
            "bpf_program__attach_iter": (vp, [vp, vp]),
            "bpf_program__set_autoattach": (None, [vp, ctypes.c_bool]),
            "bpf_program__fd": (ci, [vp]),
            "bpf_prog_test_run_opts": (ci, [ci, vp]),
            "bpf_link__fd": (ci, [vp]),
            "bpf_link__destroy": (ci, [vp]),
            "bpf_iter_create": (ci, [ci]),
            "bpf_map_update_elem": (ci, [ci, vp, vp, ctypes.c_uint64]),
            "bpf_map_lookup_elem": (ci, [ci, vp, vp]),
            "bpf_map_lookup_elem_flags": (ci, [ci, vp, vp, ctypes.c_uint64]),
            "bpf_map_delete_elem": (ci, [ci, vp]),
            "bpf_map_lookup_batch": (ci, [ci, vp, vp, vp, vp, ctypes.POINTER(cu), vp]),
            "libbpf_set_print": (vp, [vp]),
        }
        for fn_name, (restype, argtypes) in sigs.items():
            fn = getattr(lib, fn_name)
            fn.restype = restype
            fn.argtypes = argtypes
            setattr(self, fn_name.replace("__", "_"), fn)
        self.lib = lib


class _LogCollector:
    """Keeps libbpf's last messages, to explain a failed load in one line."""

    def __init__(self, lib: _Libbpf) -> None:
        libc = ctypes.CDLL(None)
        self._vsnprintf = libc.vsnprintf
        self._vsnprintf.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p,
                                    ctypes.c_void_p]
        self.lines: list[str] = []
        self._callback = _PRINT_FN(self._collect)
        lib.libbpf_set_print(ctypes.cast(self._callback, ctypes.c_void_p))  # type: ignore[attr-defined]

    def _collect(self, level: int, fmt: bytes, args: int) -> int:
        buf = ctypes.create_string_buffer(1024)
        self._vsnprintf(buf, len(buf), fmt, args)
        text = buf.value.decode("utf-8", "replace").strip()
        if text and level <= 1:  # warnings and errors
            self.lines = [*self.lines[-20:], text]
        return 0

    def reason(self) -> str:
        for line in reversed(self.lines):
            if "libbpf:" in line or "failed" in line:
                return line
        return self.lines[-1] if self.lines else ""


class BpfAccounting:
    """The loaded and attached program with its member and group tables.

    ``close()`` detaches and frees everything (idempotent); the kernel does the
    same if the process dies first.
    """

    def __init__(self, fork_grouping: ForkGrouping = ForkGrouping.JOIN_PARENT,
                 max_members: int = 65536, max_groups: int = 16384) -> None:
        problem = missing_requirement()
        if problem is not None:
            raise EnvironmentProblem(problem)
        name = _find_libbpf()
        assert name is not None
        self._lib = _Libbpf(name)
        self._log = _LogCollector(self._lib)
        self._obj: int | None = None
        self._links: list[int] = []
        self.max_members = max_members
        self.max_groups = max_groups
        self._read_buffers: dict[str, _Buffer] = {}
        self._tallies: mmap.mmap | None = None
        try:
            self._load(fork_grouping)
        except BaseException:
            self.close()
            raise

    def _call(self, fn: str) -> Any:
        return getattr(self._lib, fn)

    def _fail(self, what: str) -> EnvironmentProblem:
        err = ctypes.get_errno()
        detail = self._log.reason() or (os.strerror(err) if err else "unknown error")
        return EnvironmentProblem(f"bpf: {what}: {detail}")

    def _load(self, fork_grouping: ForkGrouping) -> None:
        path = object_path()
        obj = self._call("bpf_object_open_file")(str(path).encode(), None)
        if not obj:
            raise self._fail(f"cannot open {path}")
        self._obj = obj
        self._map_ptr("members")
        for map_name, size in (("members", self.max_members), ("groups", self.max_groups)):
            self._call("bpf_map_set_max_entries")(self._map_ptr(map_name), size)
        if self._call("bpf_object_load")(obj) != 0:
            raise self._fail("cannot load the program")
        self.fds = {m: self._call("bpf_map_fd")(self._map_ptr(m)) for m in MAP_NAMES}
        self._tallies = mmap.mmap(self.fds["tallies"], mmap.PAGESIZE, mmap.MAP_SHARED,
                                  mmap.PROT_READ | mmap.PROT_WRITE)
        self._set_u64("config", 0, int(fork_grouping))
        for prog_name in TRACEPOINT_PROGRAMS:
            link = self._call("bpf_program_attach")(self._program(prog_name))
            if not link:
                raise self._fail(f"cannot attach {prog_name}")
            self._links.append(link)

    def _map_ptr(self, name: str) -> int:
        assert self._obj is not None
        ptr = self._call("bpf_object_find_map_by_name")(self._obj, name.encode())
        if not ptr:
            raise EnvironmentProblem(f"bpf: object {object_path()} has no map {name}")
        return int(ptr)

    def _program(self, name: str) -> int:
        assert self._obj is not None
        ptr = self._call("bpf_object_find_program_by_name")(self._obj, name.encode())
        if not ptr:
            raise EnvironmentProblem(f"bpf: object {object_path()} has no program {name}")
        return int(ptr)

    def _set_u64(self, map_name: str, key: int, value: int) -> None:
        k, v = ctypes.c_uint32(key), ctypes.c_uint64(value)
        if self._call("bpf_map_update_elem")(self.fds[map_name], ctypes.byref(k),
                                               ctypes.byref(v), BPF_ANY) != 0:
            raise self._fail(f"cannot write {map_name}")

    # --- tables -------------------------------------------------------------------

    def add_group(self, group_id: int, held: bool = False) -> bool:
        """Create an empty group (kept as it is when it exists); True if it is new.

        A ``held`` group has no state and counts no time until :meth:`release`:
        its members are counted one after the other, and until the last one is,
        the group would show a state they were never in together.
        """
        value = np.zeros(1, GROUP_DTYPE)
        value["state"] = -1
        value["held"] = int(held)
        key = ctypes.c_uint32(group_id)
        return bool(self._call("bpf_map_update_elem")(self.fds["groups"], ctypes.byref(key),
                                                      value.ctypes.data, BPF_NOEXIST) == 0)

    def release(self, group_id: int) -> None:
        """Let a held group count from now (under its lock)."""
        self._test_run(RELEASE_PROGRAM, _ReleaseArg(group_id), "cannot release a group")

    def remove_group(self, group_id: int) -> None:
        key = ctypes.c_uint32(group_id)
        self._call("bpf_map_delete_elem")(self.fds["groups"], ctypes.byref(key))

    def add_members(self, members: dict[int, int]) -> int:
        """Put ``tid -> group id`` in the table (uncounted until :meth:`count_new_members`).

        Tids already followed keep their entry.  Returns how many were added.
        """
        value = np.zeros(1, MEMBER_DTYPE)
        value["state"] = MemberCode.UNSEEN
        added = 0
        update = self._call("bpf_map_update_elem")
        for tid, group_id in members.items():
            value["group"] = group_id
            key = ctypes.c_uint32(tid)
            if update(self.fds["members"], ctypes.byref(key), value.ctypes.data,
                      BPF_NOEXIST) == 0:
                added += 1
        return added

    def count_new_members(self) -> None:
        """Run the task iterator: every uncounted member counts from its state now.

        A task the iterator does not visit (on some kernels it skips process 1's
        threads) counts from its first scheduler event instead.
        """
        link = self._call("bpf_program_attach_iter")(self._program(INIT_PROGRAM), None)
        if not link:
            raise self._fail("cannot attach the task iterator")
        try:
            fd = self._call("bpf_iter_create")(self._call("bpf_link_fd")(link))
            if fd < 0:
                raise self._fail("cannot create the task iterator")
            try:
                while os.read(fd, 4096):
                    pass
            finally:
                os.close(fd)
        finally:
            self._call("bpf_link_destroy")(link)

    def uncounted(self, tids: list[int]) -> list[int]:
        """Those of ``tids`` that are in the table but not counted yet."""
        ids, values = self.read_member_table()
        waiting = set(ids[values["state"] == MemberCode.UNSEEN].tolist())
        return [t for t in tids if t in waiting]

    def set_state(self, tid: int, state: MemberCode) -> bool:
        """Count an uncounted member as ``BLOCKED`` or ``UNKNOWN`` (under its group's lock).

        For tasks the iterator cannot visit; a member counted meanwhile (it had
        an event) keeps its state.  False if the member is not in the table.
        """
        return self._test_run(SET_STATE_PROGRAM, _StateArg(tid, int(state)),
                              "cannot run the state setter") == 0

    def _test_run(self, program: str, arg: ctypes.Structure, what: str) -> int:
        """Run a ``syscall`` program on ``arg``; its return value."""
        opts = _TestRunOpts(sz=ctypes.sizeof(_TestRunOpts), ctx_in=ctypes.addressof(arg),
                            ctx_size_in=ctypes.sizeof(arg))
        fd = self._call("bpf_program_fd")(self._program(program))
        if self._call("bpf_prog_test_run_opts")(fd, ctypes.byref(opts)) != 0:
            raise self._fail(what)
        return int(opts.retval)

    def read(self) -> Counters:
        """Both tables now; each group's counters are read under its lock."""
        groups = self.read_groups()
        return Counters(*groups, *self.read_member_table(), self.tallies()[T_DROPPED])

    def read_groups(self, copy: bool = True
                    ) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.void]]:
        """The group table now (each group under its lock): the counters of one moment.

        ``copy=False`` gives views of a buffer the next read of the groups overwrites.
        """
        return self._read_all("groups", GROUP_DTYPE, self.max_groups, BPF_F_LOCK, copy)

    def read_groups_by_id(self, group_ids: list[int]
                          ) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.void]]:
        """These groups now (those that exist), one lookup each under the group's lock.

        A walk of the whole table visits every bucket of it (16384), which costs
        more than a few lookups; views of a buffer the next read overwrites.
        """
        buf = self._buffers("groups", GROUP_DTYPE, self.max_groups)
        lookup = self._call("bpf_map_lookup_elem_flags")
        fd, size = self.fds["groups"], GROUP_DTYPE.itemsize
        key = ctypes.c_uint32()
        found = 0
        for gid in group_ids[: self.max_groups]:
            key.value = gid
            if lookup(fd, ctypes.byref(key), buf.values_at + found * size, BPF_F_LOCK) == 0:
                buf.keys[found] = gid
                found += 1
            elif ctypes.get_errno() != 2:  # ENOENT: removed
                raise self._fail("cannot read groups")
        return buf.keys[:found], buf.values[:found]

    def read_member_table(self) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.void]]:
        """Every member now: tids and their records (a copy)."""
        return self._read_all("members", MEMBER_DTYPE, self.max_members, 0)

    def show_until(self, clock_ns: int) -> None:
        """Tell the program that a read extends the open stays to ``clock_ns``: a switch
        found missed later is not placed before it (figures shown never change)."""
        assert self._tallies is not None, "the program is loaded"
        struct.pack_into("<Q", self._tallies, 8 * T_SHOWN_UNTIL, clock_ns)

    def tallies(self) -> tuple[int, int]:
        """The program's tallies (``T_DROPPED``, ``T_NEW_GROUPS``), read from the
        mapped array: no system call, so a snapshot a second costs nothing here."""
        assert self._tallies is not None, "the program is loaded"
        dropped, made = struct.unpack_from("<2Q", self._tallies)
        return int(dropped), int(made)

    def _buffers(self, map_name: str, dtype: np.dtype[np.void], capacity: int) -> _Buffer:
        found = self._read_buffers.get(map_name)
        if found is None:
            found = self._read_buffers[map_name] = _Buffer.make(dtype, capacity)
        return found

    def _read_all(self, map_name: str, dtype: np.dtype[np.void], capacity: int,
                  elem_flags: int, copy: bool = True
                  ) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.void]]:
        buf = self._buffers(map_name, dtype, capacity)
        opts = _BatchOpts(ctypes.sizeof(_BatchOpts), elem_flags, 0)
        out_batch = ctypes.c_uint32(0)
        total = 0
        in_batch: ctypes.c_uint32 | None = None
        fn = self._call("bpf_map_lookup_batch")
        while total < capacity:
            count = ctypes.c_uint32(capacity - total)
            rc = fn(self.fds[map_name],
                    None if in_batch is None else ctypes.byref(in_batch),
                    ctypes.byref(out_batch),
                    buf.keys_at + total * 4, buf.values_at + total * dtype.itemsize,
                    ctypes.byref(count), ctypes.byref(opts))
            total += count.value
            if rc != 0:
                if ctypes.get_errno() == 2:  # ENOENT: the whole table was read
                    break
                raise self._fail(f"cannot read {map_name}")
            in_batch = ctypes.c_uint32(out_batch.value)
        keys, values = buf.keys[:total], buf.values[:total]
        return (keys.copy(), values.copy()) if copy else (keys, values)

    def close(self) -> None:
        """Detach every program and free the object (idempotent)."""
        if self._tallies is not None:
            self._tallies.close()  # the map lives on while it is mapped
            self._tallies = None
        for link in self._links:
            with contextlib.suppress(Exception):
                self._call("bpf_link_destroy")(link)
        self._links = []
        if self._obj is not None:
            self._call("bpf_object_close")(self._obj)
            self._obj = None

    def __enter__(self) -> BpfAccounting:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
