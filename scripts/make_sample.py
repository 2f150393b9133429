"""Write the bundled sample: a small simulated host, as generic CSV member events.

Two host CPUs run three VMs with a round-robin scheduler (4 ms slices):
``web`` (4 vCPUs, bursts of work and short sleeps), ``db`` (2 vCPUs, mostly
busy) and ``backup`` (1 vCPU, mostly idle).  Seven vCPUs on two CPUs make the
busy phases contend, so every domain runstate appears.  The simulation is
seeded, so the file is reproducible:

    python scripts/make_sample.py > src/runstate/data/sample.csv
"""

from __future__ import annotations

import heapq
import random
import sys

SLICE_NS = 4_000_000
DURATION_NS = 2_000_000_000
CPUS = 2
VMS = {"web": (4, 3e6, 2e6), "db": (2, 12e6, 1e6), "backup": (1, 1e6, 40e6)}


def simulate(seed: int = 7) -> list[tuple[int, str, str, str, str]]:
    rng = random.Random(seed)
    vcpus = [(vm, str(i)) for vm, (n, _, _) in VMS.items() for i in range(n)]
    state = {v: "blocked" for v in vcpus}
    work_left = {v: 0 for v in vcpus}
    runq: list[tuple[str, str]] = []
    on_cpu: list[tuple[str, str] | None] = [None] * CPUS
    slice_end = [0] * CPUS
    rows = []
    timers: list[tuple[int, int, str, tuple[str, str]]] = []
    seq = 0
    for v in vcpus:
        timers.append((rng.randrange(1, 20_000_000), seq, "wake", v))
        seq += 1
    heapq.heapify(timers)

    def change(t: int, v: tuple[str, str], new: str) -> None:
        rows.append((t, v[0], v[1], state[v], new))
        state[v] = new

    def dispatch(t: int) -> None:
        for cpu in range(CPUS):
            if on_cpu[cpu] is None and runq:
                v = runq.pop(0)
                on_cpu[cpu] = v
                slice_end[cpu] = t + SLICE_NS
                change(t, v, "running")

    t = 0
    while t < DURATION_NS and (timers or any(v is not None for v in on_cpu)):
        next_t = timers[0][0] if timers else DURATION_NS
        cpu_events = [(min(slice_end[c], t + work_left[v]), c) for c, v in enumerate(on_cpu)
                      if v is not None]
        if cpu_events and min(cpu_events)[0] <= next_t:
            t_new, cpu = min(cpu_events)
            v = on_cpu[cpu]
            assert v is not None
            for _c, w in enumerate(on_cpu):
                if w is not None:
                    work_left[w] -= t_new - t
            t = t_new
            if work_left[v] <= 0:
                on_cpu[cpu] = None
                change(t, v, "blocked")
                _, work, sleep = VMS[v[0]]
                heapq.heappush(timers, (t + int(rng.expovariate(1 / sleep)) + 1, seq, "wake", v))
                seq += 1
            elif runq:
                on_cpu[cpu] = None
                change(t, v, "runnable")
                runq.append(v)
            else:
                slice_end[cpu] = t + SLICE_NS
            dispatch(t)
            continue
        if not timers:
            break
        for _c, w in enumerate(on_cpu):
            if w is not None:
                work_left[w] -= next_t - t
        t, _, _, v = heapq.heappop(timers)
        _, work, _ = VMS[v[0]]
        work_left[v] = int(rng.expovariate(1 / work)) + 1
        change(t, v, "runnable")
        runq.append(v)
        dispatch(t)
    return _with_dispatch_latency(rows)


def _with_dispatch_latency(rows: list[tuple[int, str, str, str, str]],
                           latency_ns: int = 700) -> list[tuple[int, str, str, str, str]]:
    """A vCPU woken onto an idle CPU starts running a little later, as on a real host."""
    last: dict[tuple[str, str], int] = {}
    shifted = []
    for t, vm, vcpu, old, new in rows:
        key = (vm, vcpu)
        if last.get(key, -1) >= t:
            t = last[key] + latency_ns
        last[key] = t
        shifted.append((t, vm, vcpu, old, new))
    shifted.sort(key=lambda r: r[0])
    return shifted


def main() -> None:
    out = sys.stdout
    out.write("time_ns,domain,member,old_state,new_state\n")
    for t, vm, vcpu, old, new in simulate():
        out.write(f"{t},{vm},{vcpu},{old},{new}\n")


if __name__ == "__main__":
    main()
