"""A native Perfetto trace (``.pftrace``): open it at ui.perfetto.dev or with trace_processor.

Per domain a process track with a child track "domain state" (one slice per
episode, named after the state) and one thread track per member (running /
runnable / blocked / offline / lost slices); with ``--interval``, a counter
track per state holding the domain's share (%) of each interval; the host's
idle domain as a process whose threads are the CPUs (``idle`` / ``busy``);
instant events where data was lost and, at the window start, the anomaly
counts.  Timestamps are ns on the trace's own clock.

Packets are built with the protobuf classes the ``perfetto`` package ships
and streamed to the file as slices arrive.
"""

from __future__ import annotations

from typing import Any, BinaryIO

from runstate.engine.timeline import Lane, SliceBatch
from runstate.errors import EnvironmentProblem, UsageError
from runstate.export.layout import TrackNames
from runstate.model.states import DomainState
from runstate.report.model import Clock, Report
from runstate.report.palette import DOMAIN_ORDER, label

_SEQUENCE = 1
_PROCESS, _STATE, _MEMBER, _COUNTER, _GLOBAL = (
    1 << 40, 2 << 40, 3 << 40, 4 << 40, 5 << 40)


def _protos() -> Any:
    try:
        from perfetto.protos.perfetto.trace import (  # type: ignore[import-untyped,unused-ignore]
            perfetto_trace_pb2,
        )
    except ImportError:
        raise EnvironmentProblem("writing .pftrace needs the 'perfetto' package: "
                         "pip install 'runstate[perfetto]' (or write .json instead)") from None
    return perfetto_trace_pb2


def track_uuid(lane: Lane, owner: int) -> int:
    """The uuid of a domain-state track (DOMAIN) or a member's track (MEMBER)."""
    return (_STATE if lane == Lane.DOMAIN else _MEMBER) + owner


class PerfettoWriter:
    """A slice sink writing TracePackets to a binary stream; call :meth:`close` at the end."""

    def __init__(self, out: BinaryIO, names: TrackNames, clock: Clock) -> None:
        self._pb = _protos()
        self._out = out
        self._names = names
        self._clock = clock
        self._first = True
        self._descriptors()

    # ---- packets ------------------------------------------------------------

    def _packet(self) -> Any:
        packet = self._pb.TracePacket()
        packet.trusted_packet_sequence_id = _SEQUENCE
        if self._first:
            packet.sequence_flags = self._pb.TracePacket.SEQ_INCREMENTAL_STATE_CLEARED
            self._first = False
        return packet

    def _write(self, packet: Any) -> None:
        # a Trace is a repeated field 1 of TracePacket: tag, length, bytes
        data = packet.SerializeToString()
        self._out.write(b"\x0a" + _varint(len(data)) + data)

    def _track(self, uuid: int, **fields: Any) -> None:
        packet = self._packet()
        desc = packet.track_descriptor
        desc.uuid = uuid
        for key, value in fields.items():
            if key == "process":
                desc.process.pid, desc.process.process_name = value
            elif key == "thread":
                desc.thread.pid, desc.thread.tid, desc.thread.thread_name = value
            elif key == "counter_unit":
                desc.counter.unit_name = value
            else:
                setattr(desc, key, value)
        self._write(packet)

    def _descriptors(self) -> None:
        names, registry = self._names, self._names.registry
        for d in range(registry.n_domains):
            pid = names.pid(d)
            self._track(_PROCESS + d, process=(pid, names.process_name(d)))
            self._track(track_uuid(Lane.DOMAIN, d), parent_uuid=_PROCESS + d,
                        name=names.thread_name(Lane.DOMAIN, d))
        for m, info in enumerate(registry.members):
            # a thread track belongs to its process through the pid (no parent uuid)
            self._track(track_uuid(Lane.MEMBER, m),
                        thread=(names.pid(info.domain), names.tid(Lane.MEMBER, m),
                                names.thread_name(Lane.MEMBER, m)))
        self._track(_GLOBAL, name="runstate")

    def _event(self, ts: int, uuid: int, kind: str, name: str | None = None,
               value: float | None = None, args: dict[str, Any] | None = None) -> None:
        if ts < 0:
            raise UsageError(f"a time before the clock's zero ({ts} ns) cannot be written to "
                             ".pftrace (its timestamps are unsigned): write .json instead")
        packet = self._packet()
        packet.timestamp = ts
        event = packet.track_event
        event.type = getattr(self._pb.TrackEvent, kind)
        event.track_uuid = uuid
        if name is not None:
            event.name = name
        if value is not None:
            event.double_counter_value = value
        for key, arg in (args or {}).items():
            annotation = event.debug_annotations.add()
            annotation.name = key
            if isinstance(arg, int):
                annotation.int_value = arg
            else:
                annotation.string_value = str(arg)
        self._write(packet)

    # ---- slices, counters, instants ----------------------------------------

    def __call__(self, batch: SliceBatch) -> None:
        names, at, lane = self._names, self._clock.at, batch.lane
        rows = zip(batch.owner.tolist(), batch.start.tolist(), batch.end.tolist(),
                   batch.state.tolist(), strict=True)
        for owner, start, end, code in rows:
            uuid = track_uuid(lane, owner)
            a = at(start)
            self._event(a, uuid, "TYPE_SLICE_BEGIN", names.slice_name(lane, owner, code),
                        args={"color": names.color(lane, code)})
            self._event(at(end), uuid, "TYPE_SLICE_END")
            if lane == Lane.DOMAIN and code == DomainState.LOST:
                self._event(a, _PROCESS + owner, "TYPE_INSTANT", "lost data")

    def close(self, report: Report) -> None:
        """Counter tracks and anomaly instants from the report."""
        if report.anomalies:
            self._event(report.start_ns, _GLOBAL, "TYPE_INSTANT", "anomalies",
                        args=dict(report.anomalies))
        self._counters(report)
        self._out.flush()

    def _counters(self, report: Report) -> None:
        if not report.intervals:
            return
        index = {info.key: d for d, info in enumerate(self._names.registry.domains)}
        made: set[int] = set()
        for interval in report.intervals:
            for key, per_state in interval.domains.items():
                alive = sum(per_state.values())
                if key not in index or alive == 0:
                    continue
                d = index[key]
                for s in DOMAIN_ORDER:
                    uuid = _COUNTER + 8 * d + int(s)
                    if uuid not in made:
                        made.add(uuid)
                        self._track(uuid, parent_uuid=_PROCESS + d,
                                    name=f"{label(s)} %", counter_unit="%")
                    self._event(interval.start_ns, uuid, "TYPE_COUNTER",
                                value=100 * per_state[s] / alive)
        end = report.intervals[-1].end_ns
        for uuid in sorted(made):
            self._event(end, uuid, "TYPE_COUNTER", value=0.0)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)
