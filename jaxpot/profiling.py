"""Kernel launches and host transfers per MD step, read from the optimized
HLO of a compiled function (``jax.jit(f).lower(*args).compile().as_text()``):
a GPU cost model that can be evaluated on a CPU (issue 19).

Why these counts predict GPU step time: at the sizes jaxpot runs (a few
hundred to a few thousand atoms) a GPU step is not bound by arithmetic but
by the number of kernels it launches (each costs a few microseconds of launch
and synchronisation, and a small kernel leaves most of the GPU idle) and by
any round trip to the host inside the step (a device synchronisation plus a
PCIe transfer each). On one H200 a 216-water q-TIP4P/F step of jaxpot took
3.8 ms against OpenMM's 0.17 ms for the same arithmetic (2026-12-04): the
step is made of many small kernels. Fewer, larger kernels and no host
transfers inside a block are what makes a step fast; these counts are the
CPU-side guard for both (``tests/test_step_budget.py``).

What is counted, per HLO instruction of the computations that run as
programs (the entry computation, while bodies and conditions, conditional
branches, called computations; not the computations *inside* a fusion, a
reduction's ``to_apply`` or a sort comparator, which run inside one kernel):

- kernel: a ``fusion``, a ``custom-call`` (library calls: LAPACK/cuSOLVER,
  cuBLAS, ...), and every other unfused operation that moves or computes
  data (``copy``, ``dot``, ``gather``, ``scatter``, ``sort``, elementwise ops
  XLA left unfused, collectives, ...). Not counted: ``parameter``,
  ``constant``, ``get-tuple-element``, ``tuple``, ``bitcast`` and the other
  bookkeeping opcodes in ``TRIVIAL``, and the control-flow instructions
  themselves (``while``, ``conditional``, ``call``), whose computations are
  counted instead.
- host transfer: ``send``/``recv``, ``infeed``/``outfeed``, a host callback
  (a ``custom-call`` whose target names a callback, such as
  ``xla_python_cpu_callback`` or ``xla_ffi_python_gpu_callback`` from
  ``jax.pure_callback`` / ``jax.debug.print``; also ``MoveToHost`` /
  ``MoveToDevice``), and ``copy-start`` into or out of host memory
  (memory space ``S(5)``). A host transfer is also counted as a kernel.

A while loop counts its body and condition once per iteration when XLA
knows its trip count (``known_trip_count`` in its backend config; otherwise
once, and it is listed in ``unknown_trip_loops``). A conditional counts its
largest branch in ``kernels`` (an upper bound: e.g. the neighbor-list
rebuild branch, taken only every few tens of steps) and its smallest one in
``kernels_min`` (the usual step without a rebuild).

Per MD step: a block of ``jaxpot.simulate.make_block`` is a ``lax.scan``
over thermo rows whose body scans ``every`` steps; the step loop is the
while loop whose JAX op path (HLO metadata ``op_name``) holds ``step_depth``
= 2 ``while`` components. ``per_step`` is one iteration of that loop (the
steady-state step; with forces-only steps it is the step without energy);
``per_step_average`` is the whole call divided by its ``steps`` (thermo rows
and the energy step included). The CPU backend's HLO is not the GPU's (XLA
fuses differently, and e.g. random bits or a 3x3 inverse may be loops on CPU),
so the CPU counts are a proxy to watch for growth, not the GPU's launches.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

TRIVIAL = frozenset({
    "parameter", "constant", "get-tuple-element", "tuple", "bitcast", "after-all", "add-dependency",
    "opt-barrier", "partition-id", "replica-id", "domain", "async-done", "async-update", "send-done",
    "recv-done", "copy-done", "all-reduce-done", "all-gather-done", "collective-permute-done",
})
CONTROL = frozenset({"while", "conditional", "call"})
HOST_OPCODES = frozenset({"send", "recv", "infeed", "outfeed"})
HOST_TARGETS = ("callback", "MoveToHost", "MoveToDevice")

_HEADER = re.compile(r"^(ENTRY\s+)?%?([\w.\-]+)\s*\(.*\{\s*$")
_INSTR = re.compile(r"^\s*(ROOT\s+)?%?([\w.\-]+)\s*=\s*")
_OPCODE = re.compile(r"([\w\-]+)\(")
_TRIP = re.compile(r'"known_trip_count"\s*:\s*\{\s*"n"\s*:\s*"(\d+)"')
_OP_NAME = re.compile(r'op_name="([^"]*)"')
_TARGET = re.compile(r'custom_call_target="([^"]*)"')


def _attr(line: str, name: str):
    m = re.search(rf"\b{name}=%?([\w.\-]+)", line)
    return m.group(1) if m else None


def _branches(line: str):
    m = re.search(r"branch_computations=\{([^}]*)\}", line)
    if m:
        return [b.strip().lstrip("%") for b in m.group(1).split(",") if b.strip()]
    return [b for b in (_attr(line, "true_computation"), _attr(line, "false_computation")) if b]


def _split_shape(rest: str):
    """(shape text, remainder) of the text after ``name = ``."""
    if rest.startswith("("):
        depth = 0
        for i, ch in enumerate(rest):
            depth += ch == "("
            depth -= ch == ")"
            if depth == 0:
                return rest[:i + 1], rest[i + 1:].lstrip()
    shape, _, tail = rest.partition(" ")
    return shape, tail


def parse_hlo(text: str):
    """{computation name: [(opcode, shape, line)]} and the entry's name."""
    comps, entry, cur = {}, None, None
    for line in text.splitlines():
        if cur is None:
            m = _HEADER.match(line)
            if m and not line.startswith(" ") and "=" not in line.split("(", 1)[0]:
                cur = m.group(2)
                comps[cur] = []
                if m.group(1):
                    entry = cur
            continue
        if line.startswith("}"):
            cur = None
            continue
        m = _INSTR.match(line)
        if not m:
            continue
        shape, tail = _split_shape(line[m.end():])
        op = _OPCODE.match(tail)
        if op:
            comps[cur].append((op.group(1), shape, line))
    if entry is None:
        raise ValueError("no ENTRY computation in this HLO text")
    return comps, entry


def _is_host(opcode: str, shape: str, line: str) -> bool:
    if opcode in HOST_OPCODES:
        return True
    if opcode == "custom-call":
        t = _TARGET.search(line)
        return bool(t) and any(k.lower() in t.group(1).lower() for k in HOST_TARGETS)
    return opcode == "copy-start" and "S(5)" in line.split("copy-start(", 1)[0]


@dataclass
class Tally:
    """Kernels (upper bound and steady state), host transfers, kernel opcodes."""
    kernels: float = 0.0
    kernels_min: float = 0.0
    host_transfers: float = 0.0
    host_transfers_min: float = 0.0
    ops: Counter = field(default_factory=Counter)

    def add(self, other: "Tally", times: float = 1.0):
        self.kernels += times * other.kernels
        self.kernels_min += times * other.kernels_min
        self.host_transfers += times * other.host_transfers
        self.host_transfers_min += times * other.host_transfers_min
        for k, v in other.ops.items():
            self.ops[k] += times * v


def _depth(line: str) -> int | None:
    m = _OP_NAME.search(line)
    return None if m is None else m.group(1).split("/").count("while")


class _Counter:
    def __init__(self, text: str):
        self.comps, self.entry = parse_hlo(text)
        self.memo = {}
        self.loops = []          # (name, trip, depth, body tally, executions)
        self.unknown = []

    def computation(self, name: str, executions: float) -> Tally:
        tally = Tally()
        for opcode, shape, line in self.comps.get(name, ()):
            if opcode in TRIVIAL:
                continue
            if opcode == "while":
                m = _TRIP.search(line)
                trip = int(m.group(1)) if m else 1
                if m is None:
                    self.unknown.append(_attr_name(line))
                body = Tally()
                for sub in (_attr(line, "body"), _attr(line, "condition")):
                    if sub:
                        body.add(self.computation(sub, executions * trip))
                self.loops.append({"name": _attr_name(line), "trip_count": trip if m else None,
                                   "depth": _depth(line), "executions": executions * trip,
                                   "kernels_per_iteration": body.kernels,
                                   "kernels_min_per_iteration": body.kernels_min,
                                   "host_transfers_per_iteration": body.host_transfers,
                                   "ops_per_iteration": dict(body.ops)})
                tally.add(body, trip)
            elif opcode == "conditional":
                branches = [self.computation(b, executions) for b in _branches(line)]
                tally.kernels += 1          # the predicate read (a device-to-host sync on GPU)
                tally.kernels_min += 1
                tally.ops["conditional"] += 1
                if branches:
                    hi = max(branches, key=lambda t: t.kernels)
                    lo = min(branches, key=lambda t: t.kernels_min)
                    tally.kernels += hi.kernels
                    tally.host_transfers += hi.host_transfers
                    tally.kernels_min += lo.kernels_min
                    tally.host_transfers_min += lo.host_transfers_min
                    for k, v in hi.ops.items():
                        tally.ops[k] += v
            elif opcode in ("call", "async-start"):
                sub = _attr(line, "to_apply") or _attr(line, "calls")
                if sub:
                    tally.add(self.computation(sub, executions))
                if opcode == "async-start":
                    tally.kernels += 1
                    tally.kernels_min += 1
                    tally.ops[opcode] += 1
            else:
                tally.kernels += 1
                tally.kernels_min += 1
                kind = opcode
                if opcode == "custom-call":
                    t = _TARGET.search(line)
                    kind = f"custom-call:{t.group(1) if t else '?'}"
                tally.ops[kind] += 1
                if _is_host(opcode, shape, line):
                    tally.host_transfers += 1
                    tally.host_transfers_min += 1
        return tally


def _attr_name(line: str) -> str:
    m = _INSTR.match(line)
    return m.group(2) if m else "?"


@dataclass
class HloCounts:
    """Counts of one compiled call (see the module docstring for what is counted).

    kernels / kernels_min: launches of the whole call (largest / smallest
    conditional branches); host_transfers: of the whole call; per_step /
    per_step_min / per_step_host_transfers: one iteration of the step loop
    (None when no while loop sits at ``step_depth``); per_step_average:
    ``kernels / steps`` (None without ``steps``); loops: every while loop
    (trip count, scan depth, executions per call, counts per iteration);
    ops: kernel opcodes of the whole call; step_ops: of one step."""
    kernels: float
    kernels_min: float
    host_transfers: float
    per_step: float | None
    per_step_min: float | None
    per_step_host_transfers: float | None
    per_step_average: float | None
    steps: int | None
    loops: list
    unknown_trip_loops: list
    ops: dict
    step_ops: dict

    def summary(self) -> dict:
        """The scalar counts (JSON-ready)."""
        keys = ("kernels", "kernels_min", "host_transfers", "per_step", "per_step_min",
                "per_step_host_transfers", "per_step_average", "steps")
        out = {k: getattr(self, k) for k in keys}
        out["unknown_trip_loops"] = len(self.unknown_trip_loops)
        return out


def count_hlo_text(text: str, steps: int | None = None, step_depth: int = 2) -> HloCounts:
    """:class:`HloCounts` of an optimized HLO module's text (``compiled.as_text()``).

    steps: MD steps the call makes (for ``per_step_average``). step_depth: how
    many JAX ``while`` loops (scans) enclose the step in the traced function
    (2 for a ``make_block`` block: rows, then steps)."""
    c = _Counter(text)
    total = c.computation(c.entry, 1.0)
    step_loops = [lp for lp in c.loops if lp["depth"] == step_depth]
    per = per_min = per_host = None
    step_ops = {}
    if step_loops:
        # the step loop run most often (with forces-only steps: the step without energy)
        lp = max(step_loops, key=lambda x: (x["executions"], x["kernels_per_iteration"]))
        per, per_min, per_host = lp["kernels_per_iteration"], lp["kernels_min_per_iteration"], \
            lp["host_transfers_per_iteration"]
        step_ops = lp["ops_per_iteration"]
    return HloCounts(kernels=total.kernels, kernels_min=total.kernels_min, host_transfers=total.host_transfers,
                     per_step=per, per_step_min=per_min, per_step_host_transfers=per_host,
                     per_step_average=None if not steps else total.kernels / steps, steps=steps,
                     loops=c.loops, unknown_trip_loops=c.unknown, ops=dict(total.ops), step_ops=step_ops)


def compiled_hlo_counts(fn, *args, steps: int | None = None, step_depth: int = 2, jit: bool = True):
    """(:class:`HloCounts`, compiled, compile seconds) of ``fn(*args)``:
    ``jax.jit(fn).lower(*args).compile()`` (``jit=False``: ``fn`` is already
    jitted), counted from ``compiled.as_text()``; see :func:`count_hlo_text`."""
    import time

    import jax

    f = jax.jit(fn) if jit else fn
    t0 = time.perf_counter()
    compiled = f.lower(*args).compile()
    seconds = time.perf_counter() - t0
    return count_hlo_text(compiled.as_text(), steps=steps, step_depth=step_depth), compiled, seconds
