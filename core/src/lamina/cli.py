"""The `lamina` command: `engines`, `demo DIR`, `check DIR [--deep]`, `quarantine list|restore|drop`,
`salvage`, `repair`.

Exit codes: 0 success (for `check`: no damage), 1 damage or failure found, 2 usage error (bad
option, a directory that is not a Lamina store).

The library never configures logging; `main()` does (WARNING to stderr, `-v` INFO, `-vv` DEBUG).
"""

from __future__ import annotations

import json
import os
import posixpath
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, TypeVar

import attrs
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

import lamina
import lamina.salvage
from lamina.check import CheckReport, NotAStoreError, Problem, Severity, check_store, is_store
from lamina.errors import LaminaError
from lamina.io.fs import FileSystem, OSFileSystem
from lamina.plugins import Registry

EXIT_OK, EXIT_DAMAGE, EXIT_USAGE, EXIT_ERRORS = 0, 1, 2, 3
T = TypeVar("T")

app = typer.Typer(
    name="lamina",
    help="Lamina: crash-safe, plugin-based columnar storage for observability data.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


def _out() -> Console:
    return Console(highlight=False)


def _err() -> Console:
    return Console(stderr=True, highlight=False)


def _usage_error(message: str) -> typer.Exit:
    # soft_wrap: an error naming a long path must stay one greppable line
    _err().print(Text(f"error: {message}", style="bold red"), soft_wrap=True)
    return typer.Exit(EXIT_USAGE)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"lamina {lamina.__version__} (engine API {lamina.API_VERSION})")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="Log more: -v INFO, -vv DEBUG (to stderr).")
    ] = 0,
    version: Annotated[
        bool, typer.Option("--version", callback=_version_callback, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    if verbose:
        lamina.configure_logging("INFO" if verbose == 1 else "DEBUG")


def _load_registry() -> Registry:
    reg = Registry()
    try:
        reg.load_entry_points()
    except lamina.PluginError as e:  # a duplicate engine name: nothing sensible can run
        _err().print(Text(f"error: {e}", style="bold red"))
        raise typer.Exit(EXIT_DAMAGE) from None
    return reg


# -- engines ----------------------------------------------------------------------------------
@app.command()
def engines() -> None:
    """List the installed engines (and plugins that failed to load)."""
    reg = _load_registry()
    console = _out()
    table = Table(title=f"Lamina {lamina.__version__}: engines (core engine API {lamina.API_VERSION})")
    table.add_column("engine", style="bold cyan", no_wrap=True)
    table.add_column("API", justify="right", no_wrap=True)
    table.add_column("distribution", no_wrap=True)
    table.add_column("version", no_wrap=True)
    table.add_column("description", overflow="fold")
    for name in sorted(reg.engines):
        engine = reg.engines[name]
        dist, version = _split_dist(reg.sources.get(name, ""))
        table.add_row(name, str(engine.api_version), dist, version, engine.description)
    if reg.engines:
        console.print(table)
    else:
        console.print(Text("no engines installed (entry point group lamina.engines)", style="yellow"))
    for p in reg.problems:
        console.print(
            Text(f"plugin {p.plugin!r} from {p.distribution} failed to load: {p.error}", style="red"),
            soft_wrap=True,
        )
    blocked = [b.strip() for b in os.environ.get("LAMINA_DISABLE_PLUGINS", "").split(",") if b.strip()]
    if blocked:
        console.print(Text(f"blocked by LAMINA_DISABLE_PLUGINS: {', '.join(blocked)}", style="yellow"))


def _split_dist(source: str) -> tuple[str, str]:
    """'lamina-trace 0.1.0' -> ('lamina-trace', '0.1.0')."""
    dist, sep, version = source.rpartition(" ")
    return (dist, version) if sep else (source, "")


# -- check ------------------------------------------------------------------------------------
_LABEL = {
    Severity.DAMAGE: ("DAMAGE ", "bold red"),
    Severity.ERROR: ("ERROR  ", "red"),
    Severity.WARNING: ("WARNING", "yellow"),
    Severity.INFO: ("note   ", "dim"),
}


def _problem_text(p: Problem) -> Text:
    label, style = _LABEL[p.severity]
    where = p.table
    if p.part:
        where += f" part {p.part}"
    if p.file:
        where += f" file {p.file}"
    if p.offset >= 0:
        where += f" offset {p.offset}"
    what = p.reason if p.reason and p.kind == "corrupt_part" else p.kind.value
    if p.reason and p.kind != "corrupt_part":
        what += f" ({p.reason})"
    t = Text.assemble((label, style), "  ", (where, "bold"), ": ", (what, style if p.is_damage else ""))
    if p.detail:
        t.append(f": {p.detail}")
    if p.expected or p.actual:
        t.append(f" (expected {p.expected}, got {p.actual})")
    return t


_ORDER = {Severity.DAMAGE: 0, Severity.ERROR: 1, Severity.WARNING: 2, Severity.INFO: 3}


def _by_severity(problems: list[Problem]) -> list[Problem]:
    """Damage first, then warnings, then notes (stable within each)."""
    return sorted(problems, key=lambda p: _ORDER[p.severity])


def _print_report(console: Console, report: CheckReport) -> None:
    mode = (
        "deep (every frame read, checksummed and decoded)"
        if report.deep
        else "metadata, sizes, index checksums"
    )
    console.print(Text.assemble(("Lamina check ", "bold"), report.store, f" — {mode}"), soft_wrap=True)
    if report.tables:
        t = Table(show_edge=False, pad_edge=False)
        t.add_column("table", overflow="fold")
        for col in ("epoch", "parts", "rows", "bytes"):
            t.add_column(col, justify="right", no_wrap=True)
        t.add_column("status", no_wrap=True)
        for s in report.tables:
            style = "green" if s.status == "ok" else "red" if s.status == "damaged" else "yellow"
            t.add_row(
                s.path, str(s.epoch), str(s.parts), f"{s.rows:,}", f"{s.bytes:,}", Text(s.status, style=style)
            )
        console.print(t)
    else:
        console.print("no tables")
    for p in _by_severity(report.problems):
        console.print(_problem_text(p), soft_wrap=True)
    frames = f", {report.frames_checked:,} frames" if report.deep else ""
    counts = (
        f"{len(report.tables)} table(s), {report.parts_checked} part(s){frames} "
        f"checked in {report.seconds:.2f}s"
    )
    if report.ok:
        warn = sum(p.severity is Severity.WARNING for p in report.problems)
        extra = f"; {warn} warning(s)" if warn else ""
        console.print(Text.assemble(("OK", "bold green"), f": no damage; {counts}{extra}"), soft_wrap=True)
    elif report.damage:
        dmg = report.damage
        parts = {(p.table, p.part) for p in dmg if p.part}
        errs = f"; {len(report.errors)} error(s)" if report.errors else ""
        console.print(
            Text.assemble(
                ("DAMAGE FOUND", "bold red"),
                f": {len(dmg)} problem(s), {len(parts)} damaged part(s){errs}; {counts}",
            ),
            soft_wrap=True,
        )
    else:
        console.print(
            Text.assemble(
                ("ERRORS", "bold red"),
                f": no damage found, but {len(report.errors)} error(s) need attention (foreign "
                f"entries, or reads the environment refused); {counts}",
            ),
            soft_wrap=True,
        )


@app.command()
def check(
    directory: Annotated[Path, typer.Argument(help="The store directory.", show_default=False)],
    deep: Annotated[bool, typer.Option("--deep", help="Also read, checksum and decode every frame.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Check a store without changing it: exit 0 clean, 1 damage found, 2 not a store, 3 no
    damage but errors (foreign entries; reads refused by permissions, descriptors, EIO).

    Safe to run while another process has the store open.
    """
    registry = _load_registry()
    console = _out()
    try:
        with console.status(f"checking {directory}" + (" (deep)" if deep else "")):
            report = check_store(str(directory), deep=deep, registry=registry)
    except NotAStoreError as e:
        raise _usage_error(str(e)) from None
    if as_json:
        typer.echo(json.dumps(attrs.asdict(report), indent=1))
    else:
        _print_report(console, report)
    raise typer.Exit(EXIT_OK if report.ok else EXIT_DAMAGE if report.damage else EXIT_ERRORS)


# -- quarantine & salvage ---------------------------------------------------------------------
quarantine_app = typer.Typer(help="List, restore or drop quarantined (corrupt/) parts.", no_args_is_help=True)
app.add_typer(quarantine_app, name="quarantine")


def _open_for_repair(directory: Path) -> lamina.Store:
    if not is_store(os.fspath(directory)):
        raise _usage_error(f"{directory} is not a Lamina store (no lamina.json)")
    try:
        return lamina.open(os.fspath(directory), registry=_load_registry(), background=False)
    except LaminaError as e:
        _err().print(Text(f"error: {e}", style="bold red"))
        raise typer.Exit(EXIT_DAMAGE) from None


def _repair(directory: Path, action: Callable[[lamina.Store], T]) -> T:
    """Open the store (taking its lock), run one repair action, report a refusal as exit 1."""
    with _open_for_repair(directory) as store:
        try:
            return action(store)
        except LaminaError as e:
            _err().print(Text(f"error: {e}", style="bold red"))
            raise typer.Exit(EXIT_DAMAGE) from None


def _salvage_summary(console: Console, r: lamina.salvage.SalvageReport, verb: str) -> None:
    console.print(
        f"{verb} {r.part}: {r.rows_recovered:,} of {r.rows_total:,} rows recovered into "
        f"{r.new_part or '(no part: nothing verifiable)'}; {r.rows_lost:,} rows lost "
        f"({r.blocks_lost} damaged block(s))"
    )
    for p in r.problems[:10]:
        console.print(Text(f"  lost {p}", style="yellow"))
    if len(r.problems) > 10:
        console.print(f"  ... and {len(r.problems) - 10} more")


@quarantine_app.command("list")
def quarantine_list(
    directory: Annotated[Path, typer.Argument(help="The store directory.", show_default=False)],
) -> None:
    """Every quarantined part with its reason; exit 0 even when some exist."""
    with _open_for_repair(directory) as store:
        parts = store.quarantined()
    console = _out()
    if not parts:
        console.print("no quarantined parts")
        return
    table = Table(title=f"quarantined parts in {directory}")
    for col in ("part", "stage", "reason", "file", "offset", "detail", "bytes", "salvaged"):
        table.add_column(col, overflow="fold")
    for q in parts:
        r = q.reason
        table.add_row(
            q.spec,
            str(r.get("stage", "")),
            str(r.get("reason", "")),
            str(r.get("file", "")),
            str(r.get("offset", "")),
            str(r.get("detail", "")),
            f"{q.bytes:,}",
            "yes" if q.salvaged else "no",
        )
    console.print(table)


@quarantine_app.command("restore")
def quarantine_restore(
    directory: Annotated[Path, typer.Argument(help="The store directory.", show_default=False)],
    part: Annotated[str, typer.Argument(help="engine/dataset/segment/part, or a unique part name.")],
) -> None:
    """Re-validate every block of a quarantined part and put all its rows back (refuses if any
    row fails verification: use `lamina salvage` to keep the rest)."""
    report = _repair(directory, lambda store: store.restore(part))
    _salvage_summary(_out(), report, "restored")


@quarantine_app.command("drop")
def quarantine_drop(
    directory: Annotated[Path, typer.Argument(help="The store directory.", show_default=False)],
    part: Annotated[str, typer.Argument(help="engine/dataset/segment/part, or a unique part name.")],
    force: Annotated[
        bool, typer.Option("--force", help="Drop even if not salvaged (its rows are lost).")
    ] = False,
) -> None:
    """Delete a quarantined part for good."""
    q = _repair(directory, lambda store: store.drop_quarantined(part, force=force))
    _out().print(f"dropped {q.spec} ({q.bytes:,} bytes{'' if q.salvaged else ', not salvaged'})")


@app.command()
def salvage(
    directory: Annotated[Path, typer.Argument(help="The store directory.", show_default=False)],
    part: Annotated[str, typer.Argument(help="engine/dataset/segment/part, or a unique part name.")],
) -> None:
    """Commit every verifiable block of a quarantined part into a new part; count what is lost.
    Blocks whose checksum fails are never read into the store."""
    report = _repair(directory, lambda store: store.salvage(part))
    _salvage_summary(_out(), report, "salvaged")


@app.command()
def repair(
    directory: Annotated[Path, typer.Argument(help="The store directory.", show_default=False)],
) -> None:
    """Rebuild the manifest of every table the store refuses to open (damaged newest manifest,
    vanished part) from the parts' lineage; damaged parts are quarantined, never deleted."""
    from lamina.repair import repair_store

    if not is_store(os.fspath(directory)):
        raise _usage_error(f"{directory} is not a Lamina store (no lamina.json)")
    registry = _load_registry()
    actions: list[str] = []
    try:
        results = repair_store(os.fspath(directory), registry=registry, actions=actions)
    except LaminaError as e:
        _err().print(Text(f"error: {e}", style="bold red"))
        raise typer.Exit(EXIT_DAMAGE) from None
    console = _out()
    for a in actions:
        console.print(a)
    for r in results:
        console.print(
            f"{r.table}: manifest {r.epoch} lists {len(r.live)} part(s); "
            f"{len(r.retired)} retired merge input(s) left for removal; "
            f"{len(r.quarantined)} damaged part(s) quarantined {list(r.quarantined) or ''}"
        )
    # What repair does not touch (foreign entries, misplaced parts, what the environment refused)
    # is said too, each with what to do: a repair that stayed silent about them would read as "all
    # is well".
    report = check_store(os.fspath(directory), registry=registry)
    left = [p for p in _by_severity(report.problems) if p.needs_attention]
    if not results and not actions and not left:
        console.print("nothing to repair: every table opens and nothing needs attention")
    for p in left:
        console.print(Text.assemble(("not repaired ", "bold red"), _problem_text(p)), soft_wrap=True)
    if left:
        raise typer.Exit(EXIT_DAMAGE if report.damage else EXIT_ERRORS)


# -- demo -------------------------------------------------------------------------------------
SERVICES = (
    "frontend",
    "api-gateway",
    "auth",
    "users",
    "cart",
    "checkout",
    "payment",
    "inventory",
    "catalog",
    "search",
    "recommendation",
    "shipping",
    "email",
    "notification",
    "currency",
    "ads",
    "reviews",
    "pricing",
    "fraud-detection",
    "analytics",
)
ENTRY_SERVICES = ("frontend", "api-gateway")
REGIONS = ("us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ap-southeast-1", "ap-northeast-1")
#: Probability that a span of the service fails with a 5xx.
ERROR_RATE = {"payment": 0.06, "fraud-detection": 0.04, "inventory": 0.03, "search": 0.02}
BASE_ERROR_RATE = 0.005
CLIENT_ERRORS = ((400, 0.4), (401, 0.15), (403, 0.1), (404, 0.3), (429, 0.05))
SERVER_ERRORS = ((500, 0.7), (502, 0.1), (503, 0.15), (504, 0.05))
OK_CODES = ((200, 0.85), (201, 0.08), (204, 0.05), (304, 0.02))
HOSTS_PER_SERVICE = 10
USERS = 10_000
HOUR_NS = 3600 * 10**9
DEMO_SERVICE = "payment"

_EXTRA_ATTRS = (
    '"net.peer.name":"{peer}.svc.cluster.local"',
    '"net.peer.port":8080',
    '"http.user_agent":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0"',
    '"db.system":"postgresql","db.statement":"SELECT id, name, price FROM {svc} WHERE id = $1 LIMIT 1"',
    '"thread.name":"worker-{w}","thread.id":{w}',
    '"code.function":"handle_{op_id}","code.namespace":"{svc}.handlers"',
    '"messaging.system":"kafka","messaging.destination":"{svc}-events"',
    '"rpc.system":"grpc","rpc.service":"{svc}.v1.Service","rpc.method":"Call{op_id}"',
    '"cache.hit":{hit}',
    '"k8s.namespace.name":"prod","k8s.pod.name":"{svc}-7c9f{w}b-x{w}q"',
)


def _weighted(rng: random.Random, choices: tuple[tuple[int, float], ...]) -> int:
    x, acc = rng.random(), 0.0
    for value, w in choices:
        acc += w
        if x < acc:
            return value
    return choices[-1][0]


@attrs.define
class _Catalogue:
    """The simulated system: services, their operations (with HTTP methods) and hosts."""

    operations: dict[str, list[tuple[str, str]]]
    hosts: dict[str, list[tuple[str, str]]]  # service -> [(host, region)]

    @classmethod
    def build(cls, seed: int) -> _Catalogue:
        rng = random.Random(f"catalogue:{seed}")
        ops: dict[str, list[tuple[str, str]]] = {}
        hosts: dict[str, list[tuple[str, str]]] = {}
        for si, svc in enumerate(SERVICES):
            res = svc.replace("-", "_")
            templates = [
                ("GET", f"GET /api/v1/{res}"),
                ("GET", f"GET /api/v1/{res}/{{id}}"),
                ("POST", f"POST /api/v1/{res}"),
                ("PUT", f"PUT /api/v1/{res}/{{id}}"),
                ("DELETE", f"DELETE /api/v1/{res}/{{id}}"),
                ("PATCH", f"PATCH /api/v1/{res}/{{id}}"),
                ("POST", f"{svc}.v1.Service/Get"),
                ("POST", f"{svc}.v1.Service/List"),
                ("POST", f"{svc}.v1.Service/Update"),
                ("GET", f"GET /internal/{res}/health"),
                ("POST", f"{svc}.v1.Service/Batch"),
            ]
            rng.shuffle(templates)
            ops[svc] = [(op, method) for method, op in templates[: rng.randint(9, 11)]]
            hosts[svc] = [
                (
                    f"ip-10-{si}-{k // 6}-{rng.randint(2, 254)}.{REGIONS[k % len(REGIONS)]}.compute.internal",
                    REGIONS[k % len(REGIONS)],
                )
                for k in range(HOSTS_PER_SERVICE)
            ]
        return cls(ops, hosts)

    def host_in(self, rng: random.Random, service: str, region: str) -> tuple[str, str]:
        local = [h for h in self.hosts[service] if h[1] == region]
        return rng.choice(local or self.hosts[service])


class TraceWorkload:
    """Deterministic synthetic traces: ~10 spans each (a root and its call tree), 16-byte trace
    IDs, 8-byte span IDs, 8 tags of mixed cardinality and type, 200-500 byte JSON payloads, start
    times spread over the hour before `now_ns` in arrival order."""

    def __init__(self, seed: int, total_spans: int, now_ns: int, salt: int = 0) -> None:
        self.rng = random.Random(f"spans:{seed}:{salt}")
        self.cat = _Catalogue.build(seed)
        self.total = total_spans
        self.window_start = now_ns - HOUR_NS
        self.window = HOUR_NS - 5 * 10**9  # the last span starts a few seconds before now
        self.generated = 0
        self.traces = 0
        self.payload_bytes = 0
        #: (trace_id, spans) of every trace, for the lookups after.
        self.trace_sizes: list[tuple[bytes, int]] = []
        #: timestamps of DEMO_SERVICE spans with status 500, to check the tag query against.
        self.demo_hits: list[int] = []
        #: (start, duration, trace_id) of every DEMO_SERVICE span, to check the slowest-traces query.
        self.demo_spans: list[tuple[int, int, bytes]] = []

    def _status(self, service: str) -> int:
        rng = self.rng
        x = rng.random()
        if x < ERROR_RATE.get(service, BASE_ERROR_RATE):
            return _weighted(rng, SERVER_ERRORS)
        if x > 0.97:
            return _weighted(rng, CLIENT_ERRORS)
        return _weighted(rng, OK_CODES)

    def _payload(
        self,
        svc: str,
        op: str,
        kind: str,
        parent: bytes,
        start: int,
        dur: int,
        status: int,
        method: str,
        host: str,
        region: str,
        user: str,
        error: bool,
    ) -> bytes:
        rng = self.rng
        target = rng.randint(200, 500)
        s = (
            f'{{"name":"{op}","kind":"{kind}","parent_span_id":"{parent.hex()}",'
            f'"status":{{"code":"{"ERROR" if error else "OK"}"}},'
            f'"resource":{{"service.name":"{svc}","host.name":"{host}","cloud.region":"{region}"}},'
            f'"attributes":{{"http.method":"{method}","http.status_code":{status},"enduser.id":"{user}"'
        )
        if error:
            s += ',"exception.type":"UpstreamError","exception.message":"upstream returned 5xx"'
        k = rng.randrange(len(_EXTRA_ATTRS))
        for i in range(len(_EXTRA_ATTRS)):
            if len(s) + 2 >= target:
                break
            w = rng.randint(1, 64)
            extra = _EXTRA_ATTRS[(k + i) % len(_EXTRA_ATTRS)].format(
                svc=svc, peer=rng.choice(SERVICES), w=w, op_id=w % 11, hit="true" if w % 3 else "false"
            )
            if len(s) + len(extra) + 3 > 500:
                continue
            s += "," + extra
        s += "}}"
        if len(s) < 200:
            s = s[:-1] + f',"sampling.priority":1,"note":"{"x" * (200 - len(s))}"}}'
        return s.encode()

    def _trace(self, room: int) -> list[tuple[bytes, bytes, int, int, bytes, dict[str, Any]]]:
        """One trace of at most `room` spans."""
        rng, cat = self.rng, self.cat
        n = min(room, max(1, min(30, int(rng.gauss(10, 3)))))
        trace_id = rng.randbytes(16)
        region = rng.choice(REGIONS)
        user = f"user-{int(USERS * rng.random() ** 2):05d}"  # a few heavy users, a long tail
        t0 = self.window_start + self.window * self.generated // max(1, self.total) + rng.randrange(10**9)
        root_dur = min(3 * 10**9, int(rng.lognormvariate(18.2, 1.0)))  # median ~80 ms
        spans: list[tuple[bytes, bytes, int, int, bytes, dict[str, Any]]] = []
        nodes: list[tuple[bytes, int, int]] = []  # (span_id, start, duration)
        for j in range(n):
            span_id = rng.randbytes(8)
            if j == 0:
                svc, parent, start, dur, kind = rng.choice(ENTRY_SERVICES), b"\0" * 8, t0, root_dur, "SERVER"
            else:
                pid, pstart, pdur = nodes[rng.randrange(len(nodes)) if rng.random() < 0.5 else 0]
                svc = rng.choice(SERVICES[2:])
                parent = pid
                start = pstart + int(pdur * rng.random() * 0.7)
                dur = max(1000, int(pdur * rng.uniform(0.05, 0.6)))
                kind = "CLIENT" if rng.random() < 0.3 else "SERVER"
            op, method = rng.choice(cat.operations[svc])
            host, hregion = cat.host_in(rng, svc, region)
            status = self._status(svc)
            error = status >= 500 or rng.random() < 0.002
            payload = self._payload(
                svc, op, kind, parent, start, dur, status, method, host, hregion, user, error
            )
            tags = {
                "service": svc,
                "operation": op,
                "http.method": method,
                "http.status_code": status,
                "region": hregion,
                "host": host,
                "error": error,
                "user_id": user,
            }
            nodes.append((span_id, start, dur))
            spans.append((trace_id, span_id, start, dur, payload, tags))
            self.payload_bytes += len(payload)
            if svc == DEMO_SERVICE and status == 500:
                self.demo_hits.append(start)
            if svc == DEMO_SERVICE:
                self.demo_spans.append((start, dur, trace_id))
        self.traces += 1
        self.trace_sizes.append((trace_id, n))
        return spans

    def batches(self, size: int) -> Iterator[dict[str, Any]]:
        """Columnar batches of exactly `size` spans (the last one smaller); a trace may straddle
        two batches, as spans of one trace arrive at different times."""
        pending: list[tuple[bytes, bytes, int, int, bytes, dict[str, Any]]] = []
        while self.generated < self.total:
            trace = self._trace(self.total - self.generated)
            pending.extend(trace)
            self.generated += len(trace)
            while len(pending) >= size:
                chunk, pending = pending[:size], pending[size:]
                yield _columns(chunk)
        if pending:
            yield _columns(pending)


def _columns(spans: list[tuple[bytes, bytes, int, int, bytes, dict[str, Any]]]) -> dict[str, Any]:
    tag_names = (
        "service",
        "operation",
        "http.method",
        "http.status_code",
        "region",
        "host",
        "error",
        "user_id",
    )
    return {
        "trace_id": [s[0] for s in spans],
        "span_id": [s[1] for s in spans],
        "timestamp": [s[2] for s in spans],
        "duration": [s[3] for s in spans],
        "payload": [s[4] for s in spans],
        "tags": {t: [s[5][t] for s in spans] for t in tag_names},
    }


def _sample_traces(sizes: list[tuple[bytes, int]], batch: int) -> list[tuple[bytes, int]]:
    """The first trace, the trace split across two flushes nearest the middle, the largest."""
    split, offset, middle = sizes[0], 0, sum(n for _, n in sizes) // 2
    for tid, n in sizes:
        if offset // batch != (offset + n - 1) // batch:
            split = (tid, n)
            if offset >= middle:
                break
        offset += n
    return [sizes[0], split, max(sizes, key=lambda s: s[1])]


def _disk_usage(fs: FileSystem, path: str) -> int:
    total = 0
    for name in fs.listdir(path):
        p = posixpath.join(path, name)
        total += _disk_usage(fs, p) if fs.is_dir(p) else fs.file_size(p)
    return total


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def _demo_index(store: lamina.Store) -> Any:
    """The demo's trace dataset indexed by span duration per service (lamina_sidx.traces), each
    flush committing traces and index in one transaction; None when lamina-sidx is not installed."""
    if "sidx" not in store.registry.engines:
        return None
    try:
        from lamina_sidx.traces import IndexedTraces, IndexRule
    except ImportError:
        return None
    return IndexedTraces(store, [IndexRule("duration", key="duration", series_tag="service")])


def _expected_slowest(work: TraceWorkload, start: int, end: int, limit: int) -> list[tuple[int, bytes]]:
    """(duration, trace_id) of the `limit` traces whose slowest DEMO_SERVICE span starting in
    [start, end) is slowest, as the index orders them (equal durations: higher trace ID first)."""
    best: dict[bytes, int] = {}
    for ts, dur, tid in work.demo_spans:
        if start <= ts < end and dur > best.get(tid, -1):
            best[tid] = dur
    return sorted(((d, t) for t, d in best.items()), reverse=True)[:limit]


@app.command()
def demo(
    directory: Annotated[
        Path, typer.Argument(help="Store directory (created, or appended to).", show_default=False)
    ],
    spans: Annotated[int, typer.Option("--spans", min=1, help="Spans to write.")] = 300_000,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (same seed, same data).")] = 42,
    batch: Annotated[int, typer.Option("--batch", min=1, help="Spans per write + durable flush.")] = 10_000,
    deep: Annotated[bool, typer.Option("--deep/--no-deep", help="Deep check at the end.")] = True,
    rows: Annotated[
        int, typer.Option("--rows", min=1, help="Rows per other engine (measure, stream, ...).")
    ] = 100_000,
) -> None:
    """Write a realistic synthetic workload into every installed engine, merge, query, check.

    Traces come first; then every other engine that declares a demo writes about --rows rows of
    its own workload. Appends when DIR already holds a store (earlier demo data is kept)."""
    try:
        _demo(directory, spans, seed, batch, deep, rows)
    except (OSError, LaminaError) as e:
        # a full disk, a refused write, an unreadable directory: say what happened, not a traceback
        _err().print(
            Text(
                f"demo stopped: {e}\nEverything flushed before this point is durable; "
                f"`lamina check {directory}` shows the state of the store.",
                style="bold red",
            ),
            soft_wrap=True,
        )
        raise typer.Exit(EXIT_DAMAGE) from None


def _demo(directory: Path, spans: int, seed: int, batch: int, deep: bool, rows: int) -> None:
    """The demo itself (see `demo`); an OSError or LaminaError it raises is reported there."""
    fs = OSFileSystem()
    root = str(directory)
    if fs.exists(root) and not fs.is_dir(root):
        raise _usage_error(f"{root} exists and is not a directory")
    if fs.is_dir(root) and fs.listdir(root) and not is_store(root, fs):
        raise _usage_error(f"{root} is not empty and not a Lamina store; refusing to write into it")
    console = _out()
    registry = _load_registry()
    if "trace" not in registry.engines:
        console.print(Text("the trace engine is not installed (distribution lamina-trace)", style="bold red"))
        raise typer.Exit(EXIT_DAMAGE)

    try:
        store = lamina.open(root, background=False, registry=registry)
    except LaminaError as e:
        console.print(Text(f"cannot open {root}: {e}", style="bold red"), soft_wrap=True)
        raise typer.Exit(EXIT_DAMAGE) from None
    failed: list[str] = []
    with store:
        traces = store.engine("trace")
        before = traces.stats()
        work = TraceWorkload(seed, spans, time.time_ns(), salt=before.rows)
        console.print(
            Text.assemble(
                ("Lamina demo", "bold"),
                f": {spans:,} spans into {store.path} (seed {seed}",
                f", appending to {before.rows:,} spans already stored)" if before.rows else ")",
            ),
            soft_wrap=True,
        )

        ingest_s = 0.0
        flushes = 0
        columns = [
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        ]
        indexed = _demo_index(store)
        t_all = time.monotonic()
        with Progress(*columns, console=console, transient=False) as progress:
            task = progress.add_task("writing spans", total=spans)
            for b in work.batches(batch):
                t0 = time.monotonic()
                n = (indexed or traces).write(b)
                if (indexed or traces).flush():
                    flushes += 1
                ingest_s += time.monotonic() - t0
                progress.advance(task, n)
        total_s = time.monotonic() - t_all
        parts_before = traces.stats().parts

        with console.status("merging parts"):
            t0 = time.monotonic()
            merges = traces.merge_now()
            if indexed is not None:
                indexed.index.merge_now()
            merge_s = time.monotonic() - t0
        after = traces.stats()

        # Sample queries.
        q = Table(
            title="sample queries (traces: first, split across two flushes, largest)",
            title_justify="left",
        )
        q.add_column("query")
        q.add_column("result", justify="right")
        q.add_column("expected", justify="right")
        q.add_column("ms", justify="right")
        for tid, n_spans in _sample_traces(work.trace_sizes, batch):
            t0 = time.monotonic()
            found = traces.query(trace_ids=[tid])
            ms = (time.monotonic() - t0) * 1000
            if len(found) != n_spans:
                failed.append(f"trace {tid.hex()}: {len(found)} spans, expected {n_spans}")
            q.add_row(f"trace {tid.hex()}", f"{len(found)} spans", str(n_spans), f"{ms:.1f}")
        now = time.time_ns()
        start = now - 5 * 60 * 10**9
        cond = {"service": DEMO_SERVICE, "http.status_code": 500}
        mine = sum(start <= ts < now + 1 for ts in work.demo_hits)
        t0 = time.monotonic()
        hits = traces.query(start=start, end=now + 1, tags=cond)
        ms = (time.monotonic() - t0) * 1000
        if len(hits) < mine:
            failed.append(
                f"{DEMO_SERVICE} 500s in the last 5 min: {len(hits)} spans, at least {mine} expected"
            )
        label = f"{DEMO_SERVICE} & http.status_code 500, last 5 min"
        q.add_row(label, f"{len(hits)} spans", f">= {mine}" if before.rows else str(mine), f"{ms:.1f}")
        t0 = time.monotonic()
        first = traces.query(start=start, end=now + 1, tags=cond, limit=20)
        ms = (time.monotonic() - t0) * 1000
        if first != hits[:20]:
            failed.append("the limit-20 query did not return the first 20 spans of the unlimited one")
        q.add_row("  the same, limit 20", f"{len(first)} spans", str(min(20, len(hits))), f"{ms:.1f}")
        if indexed is not None:  # sidx -> trace
            t0 = time.monotonic()
            slow = indexed.slowest(DEMO_SERVICE, start=now - HOUR_NS, end=now + 1, limit=20)
            ms = (time.monotonic() - t0) * 1000
            want = _expected_slowest(work, now - HOUR_NS, now + 1, 20)
            got = [(t.key, t.trace_id) for t in slow]
            # appending to an older store: its traces may rank too, never below this run's
            ok = got == want
            if before.rows:
                ok = len(got) >= len(want) and all(g[0] >= w[0] for g, w in zip(got, want, strict=False))
            if not ok or not all(t.spans for t in slow):
                failed.append(f"slowest {DEMO_SERVICE} traces via sidx: {got[:3]}..., expected {want[:3]}...")
            q.add_row(
                f"slowest 20 {DEMO_SERVICE} traces, last hour (sidx -> trace)",
                f"{len(slow)} traces, top {slow[0].key / 1e6:.0f} ms" if slow else "0 traces",
                f"{len(want)} traces, top {want[0][0] / 1e6:.0f} ms" if want else "0 traces",
                f"{ms:.1f}",
            )
        console.print(q)

        others = [e for name, e in sorted(registry.engines.items()) if name != "trace" and e.demo is not None]
        engine_lines = [_run_engine_demo(console, store, e, rows, seed, columns, failed) for e in others]

    # Check with the store closed (check_store never needs it, but bytes on disk are final now).
    with console.status("checking every part" + (" (deep)" if deep else "")):
        report = check_store(root, deep=deep, registry=registry)
    disk = _disk_usage(fs, store.path)

    summary = Table(title="Lamina demo summary", title_justify="left", show_header=False)
    summary.add_column("metric", style="bold")
    summary.add_column("value", justify="right")
    summary.add_row("spans written", f"{spans:,}")
    summary.add_row("traces written", f"{work.traces:,}")
    if before.rows:
        summary.add_row("spans in store (all runs)", f"{after.rows:,}")
    summary.add_row("flushes (durable)", f"{flushes:,} (one per {batch:,} spans)")
    summary.add_row("parts before merge", f"{parts_before:,}")
    summary.add_row("parts after merge", f"{after.parts:,} ({merges} merge(s), {after.tables} table(s))")
    summary.add_row("bytes on disk", f"{disk:,} ({_fmt_bytes(disk)})")
    summary.add_row("bytes per span", f"{disk / max(1, after.rows):,.1f}")
    summary.add_row("payload bytes per span (raw)", f"{work.payload_bytes / max(1, spans):,.1f}")
    summary.add_row("ingest (write + flush)", f"{spans / max(ingest_s, 1e-9):,.0f} spans/s")
    summary.add_row(
        "end to end incl. generation", f"{spans / max(total_s, 1e-9):,.0f} spans/s ({total_s:.1f} s)"
    )
    summary.add_row("merge", f"{merge_s:.2f} s")
    for label, value in engine_lines:
        summary.add_row(label, value)
    damage = len(report.damage)
    check_label = "deep check" if deep else "check"
    if report.ok:
        result = Text(
            f"OK: {report.parts_checked} part(s), {report.frames_checked:,} frames, no damage", style="green"
        )
    else:
        result = Text(f"DAMAGE: {damage} problem(s)", style="bold red")
    summary.add_row(f"{check_label} ({report.seconds:.2f} s)", result)
    console.print(summary)
    for p in _by_severity(report.problems):
        console.print(_problem_text(p), soft_wrap=True)
    for f in failed:
        console.print(Text(f"query check failed: {f}", style="bold red"), soft_wrap=True)
    if not report.ok or failed:
        raise typer.Exit(EXIT_DAMAGE)


def _run_engine_demo(
    console: Console,
    store: lamina.Store,
    engine: lamina.Engine,
    rows: int,
    seed: int,
    columns: list[Any],
    failed: list[str],
) -> tuple[str, str]:
    """Run one engine's own demo (`Engine.demo`) with a progress bar; print its checked queries.
    A demo that raises is reported as a failure of that engine, never a traceback."""
    demo = engine.demo
    if demo is None:
        return (engine.name, "no demo")
    handle = store.engine(engine.name)
    t0 = time.monotonic()
    try:
        with Progress(*columns, console=console, transient=False) as progress:
            task = progress.add_task(f"{engine.name}: writing", total=rows)
            report = demo(
                handle,
                rows=rows,
                seed=seed,
                now_ns=time.time_ns(),
                advance=lambda n: progress.advance(task, n),
            )
    except Exception as e:  # a broken third-party demo must not hide the other engines' results
        failed.append(f"{engine.name} demo failed: {type(e).__name__}: {e}")
        return (f"{engine.name}", "demo FAILED")
    secs = time.monotonic() - t0
    q = Table(title=f"{engine.name}: sample queries", title_justify="left")
    for col, justify in (("query", "left"), ("result", "right"), ("expected", "right"), ("ms", "right")):
        q.add_column(col, justify=justify)  # type: ignore[arg-type]
    for dq in report.queries:
        q.add_row(dq.label, dq.result, dq.expected, f"{dq.ms:.1f}", style=None if dq.ok else "bold red")
        if not dq.ok:
            failed.append(f"{engine.name}: {dq.label}: {dq.result}, expected {dq.expected}")
    console.print(q)
    for note in report.notes:
        console.print(Text(f"{engine.name}: {note}"), soft_wrap=True)
    st = handle.stats()
    return (
        f"{engine.name}",
        f"{report.rows:,} {report.unit} in {secs:.1f} s ({report.rows / max(secs, 1e-9):,.0f}/s, "
        f"{report.flushes} flushes), {st.parts} part(s)",
    )


def main() -> None:
    """Console-script entry point (`lamina`)."""
    lamina.configure_logging("WARNING")
    app(prog_name="lamina")


if __name__ == "__main__":
    main()
