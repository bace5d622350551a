"""What the benchmarks share: figures, the machine, processes, the load generator, results.

Every server a benchmark measures runs in a process of its own (the real bot as `python -m bot
serve`, each baseline as `python -m bench.servers …`), under the same uvicorn settings, on
127.0.0.1; the load generator runs in the benchmark's process, so it does not share the
server's event loop (on a 2-core machine it still shares the CPU, for the bot and the baseline
alike: that is why each figure is read against a baseline measured in the same run).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import math
import os
import platform
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "RESULTS.md"

# The same three Slack settings the tests use; nothing here is a real credential.
SIGNING_SECRET = "bench-signing-secret-0123456789abcdef"
BOT_TOKEN = "xoxb-0000000000-0000000000-benchbenchbenchbench"
CHANNEL = "C0BENCHAPPR"
FIRMWARE = "SEQUANSCommunications_GM01Q_SR1.2.0.0-10512_SR1.2.0.0-10657"
FIRMWARE_FROM, FIRMWARE_TO = "SR1.2.0.0-10512", "SR1.2.0.0-10657"


# --- figures ------------------------------------------------------------------------------------


@dataclass
class Figure:
    """One measured number, with its baseline and its target (both optional)."""

    name: str
    value: float
    unit: str
    baseline: float | None = None
    target: str = ""
    ok: bool | None = None  # None: no target to meet
    digits: int = 1

    def shown(self, value: float | None) -> str:
        if value is None:
            return "–"
        if self.unit == "ms" or self.unit == "s" or self.digits:
            text = f"{value:,.{self.digits}f}"
        else:
            text = f"{value:,.0f}"
        return f"{text} {self.unit}".strip()

    @property
    def verdict(self) -> str:
        return {True: "met", False: "**missed**", None: ""}[self.ok]


@dataclass
class Section:
    title: str
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    failed: bool = False

    def add(self, *figures: Figure) -> None:
        self.figures.extend(figures)

    def note(self, text: str) -> None:
        self.notes.append(text)

    def print(self) -> None:
        print(f"\n== {self.title} ({self.seconds:.0f} s) ==")
        for f in self.figures:
            base = f"   baseline {f.shown(f.baseline)}" if f.baseline is not None else ""
            target = f"   target {f.target}: {f.verdict.strip('*')}" if f.target else ""
            print(f"  {f.name:<60} {f.shown(f.value):>12}{base}{target}")
        for n in self.notes:
            print(f"  - {n}")

    def markdown(self) -> str:
        lines = [
            f"#### {self.title}",
            "",
            "| figure | measured | baseline | target | |",
            "| --- | ---: | ---: | --- | --- |",
        ]
        for f in self.figures:
            base = f.shown(f.baseline) if f.baseline is not None else ""
            lines.append(f"| {f.name} | {f.shown(f.value)} | {base} | {f.target} | {f.verdict} |")
        lines.append("")
        lines.extend(f"- {n}" for n in self.notes)
        if self.notes:
            lines.append("")
        return "\n".join(lines)


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of `values`; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


# --- the machine and RESULTS.md -----------------------------------------------------------------


def machine() -> dict[str, str]:
    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    load = ""
    with contextlib.suppress(OSError):
        load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    return {
        "platform": platform.platform(),
        "CPU": cpu,
        "CPUs": str(os.cpu_count()),
        "memory": memory,
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
        "load average at start (1/5/15 min)": load,
    }


def append_results(
    sections: Sequence[Section], *, command: str, host: dict[str, str], path: Path = RESULTS
) -> None:
    """Append one dated section; never touches what is already in the file."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"\n## {now} — `{command}`", ""]
    lines += [f"- {key}: {value}" for key, value in host.items() if value]
    lines.append("")
    for section in sections:
        lines.append(section.markdown())
    text = "\n".join(lines) + "\n"
    if not path.exists():
        text = _HEADER + text
    # One append of the whole section: another engineer appends to this file too.
    with path.open("a", encoding="utf-8") as out:
        out.write(text)


_HEADER = """# Benchmark results

Appended by `python -m bench.run` (see the README's *Benchmarks*), newest last. Each run says
which machine it ran on; each figure is shown beside a baseline measured in the same run and
against its target. Sections written by other benchmarks are kept as they are.
"""


# --- processes -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def tail(self, chars: int = 3000) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")[-chars:]
        return ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=25)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def spawn(
    name: str, module: str, *args: str, env: dict[str, str], port: int, workdir: Path
) -> Server:
    """Start `python -m module args…` (this interpreter); its output goes to a log in `workdir`.

    It runs in `workdir`, not in the checkout: `fota-bot serve` reads a `.env` from its working
    directory, and a developer's `.env` (real ThingSpace credentials!) must never reach a bench.
    """
    log = workdir / f"{name}.log"
    with log.open("ab") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", module, *args], cwd=workdir, env=env, stdout=sink, stderr=sink
        )
    return Server(name, process, f"http://127.0.0.1:{port}", log)


def base_env(**extra: str) -> dict[str, str]:
    """A clean environment for a child: no stray FOTA_/SLACK_/THINGSPACE_ settings (and `spawn`
    keeps it away from any .env); the checkout importable from its temporary directory."""
    keep = {
        k: v for k, v in os.environ.items() if not k.startswith(("FOTA_", "SLACK_", "THINGSPACE_"))
    }
    keep["PYTHONPATH"] = str(REPO)
    return {**keep, **extra}


async def wait_ready(
    server: Server, path: str = "/healthz", *, within: float = 30.0, step: float = 0.01
) -> float:
    """Poll `path` until it answers 200 (bounded); return the seconds it took from now."""
    started = time.perf_counter()
    deadline = started + within
    async with aiohttp.ClientSession() as session:
        while time.perf_counter() < deadline:
            if server.process.poll() is not None:
                raise RuntimeError(f"{server.name} exited:\n{server.tail()}")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with session.get(server.url + path) as response:
                    if response.status == 200:
                        return time.perf_counter() - started
            await asyncio.sleep(step)
    raise RuntimeError(
        f"{server.name} did not answer {path} within {within:.0f} s:\n{server.tail()}"
    )


@contextlib.asynccontextmanager
async def running(server: Server, path: str = "/healthz") -> AsyncIterator[Server]:
    try:
        await wait_ready(server, path)
        yield server
    finally:
        server.stop()


def rss_kib(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (peak) of a process, in KiB, from /proc."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def db_query(path: Path, sql: str, params: Sequence[object] = ()) -> list[tuple[object, ...]]:
    """Read the bot's SQLite file from outside (WAL: readers never block the bot)."""
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as conn:
        return conn.execute(sql, list(params)).fetchall()


async def wait_for(
    check: Callable[[], bool], what: str, *, within: float, step: float = 0.1
) -> float:
    """Poll a condition in another process's state (bounded); seconds it took."""
    started = time.perf_counter()
    while not check():
        if time.perf_counter() - started > within:
            raise RuntimeError(f"still waiting for {what} after {within:.0f} s")
        await asyncio.sleep(step)
    return time.perf_counter() - started


# --- the load generator --------------------------------------------------------------------------

Request = tuple[str, str, bytes, dict[str, str]]  # kind, url, body, headers


@dataclass
class Load:
    """What one closed-loop run saw: latency per request kind, statuses, completion times."""

    latencies: dict[str, list[float]] = field(default_factory=dict)  # seconds
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    done_at: list[float] = field(default_factory=list)  # seconds since the start
    elapsed: float = 0.0

    @property
    def count(self) -> int:
        return sum(len(v) for v in self.latencies.values())

    def all(self) -> list[float]:
        return [x for v in self.latencies.values() for x in v]

    def ms(self, p: float, kind: str | None = None) -> float:
        values = self.latencies.get(kind, []) if kind else self.all()
        return percentile(values, p) * 1000

    @property
    def rate(self) -> float:
        return self.count / self.elapsed if self.elapsed else 0.0

    def slowest_window_rate(self, window: float = 5.0) -> float:
        """The lowest completion rate over any whole `window` seconds (the first and last
        partial windows left out): what "sustained" means."""
        if self.elapsed < 2 * window:
            return self.rate
        buckets = Counter(int(t // window) for t in self.done_at)
        whole = range(0, int(self.elapsed // window))
        return min(buckets.get(i, 0) for i in whole) / window


async def closed_loop(
    next_request: Callable[[int], Request],
    *,
    concurrency: int,
    duration: float | None = None,
    total: int | None = None,
    request_timeout: float = 30.0,
) -> Load:
    """`concurrency` clients, each sending its next request as soon as the last one is
    answered, for `duration` seconds or until `total` requests were sent.

    `next_request(i)` builds request number i (signing it, when it is a Slack request, at the
    moment it is sent). Latency is measured from just before the request is written to the
    last byte of the answer.
    """
    assert duration is not None or total is not None
    load = Load()
    counter = iter(range(total if total is not None else 10**12))
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    started = time.perf_counter()
    stop_at = started + duration if duration is not None else math.inf
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=request_timeout)
    ) as session:

        async def client() -> None:
            for i in counter:
                if time.perf_counter() >= stop_at:
                    return
                kind, url, body, headers = next_request(i)
                t0 = time.perf_counter()
                try:
                    async with session.post(url, data=body, headers=headers) as response:
                        await response.read()
                        status = response.status
                except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                    load.errors[type(exc).__name__] += 1
                    continue
                t1 = time.perf_counter()
                load.latencies.setdefault(kind, []).append(t1 - t0)
                load.statuses[status] += 1
                load.done_at.append(t1 - started)

        await asyncio.gather(*(client() for _ in range(concurrency)))
    load.elapsed = time.perf_counter() - started
    return load


def spawn_standin(work: Path, port: int) -> Server:
    """The Slack stand-in in its own process (`python -m bench.servers standin`)."""
    return spawn("standin", "bench.servers", "standin", "--port", str(port), env=base_env(), port=port, workdir=work)


def bot_env(*, slack_url: str, db: Path, port: int, **extra: str) -> dict[str, str]:
    """The environment `fota-bot serve` runs with in a benchmark: the three Slack settings,
    the stand-in as Slack, its own database and port, quiet logs."""
    return base_env(
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        FOTA_APPROVAL_CHANNEL=CHANNEL,
        SLACK_API_URL=f"{slack_url}/api/",
        FOTA_DB=str(db),
        FOTA_HOST="127.0.0.1",
        FOTA_PORT=str(port),
        FOTA_LOG_LEVEL="WARNING",
        **extra,
    )


# --- history, ThingSpace in its own process, the loop-stall watch --------------------------------

# Finished campaigns on record before a run: none, a busy team's few months, years of history
# (with 100 devices each: 10,000,000 device rows).
HISTORY = ((0, 0), (10_000, 100), (100_000, 100))
QUICK_HISTORY = ((0, 0), (2_000, 10))
SANDBOX_ACCOUNT = "0000000000-00001"


def history_label(campaigns: int, devices: int) -> str:
    return f"{campaigns:,} campaigns stored" + (f" ({devices} devices each)" if campaigns else "")


def seed(db: Path, campaigns: int, devices: int) -> float:
    """Put `campaigns` finished campaigns in the (not yet existing) database; seconds it took."""
    from bench import seed as seeding

    return seeding.copy_to(db, campaigns, devices)


def last_id(db: Path) -> int:
    """The highest campaign id in the database: the run's own campaigns come after it."""
    if not db.exists():
        return 0
    return int(db_query(db, "SELECT coalesce(max(id), 0) FROM campaigns")[0][0])  # type: ignore[arg-type]


def spawn_sandbox(work: Path, port: int, speed: float = 1.0) -> Server:
    """The ThingSpace sandbox in its own process, so that its work is not the bot's."""
    return spawn(
        "sandbox", "bench.servers", "sandbox", "--port", str(port), "--speed", f"{speed:g}",
        env=base_env(), port=port, workdir=work,
    )


def thingspace_env(sandbox_url: str, bot_port: int) -> dict[str, str]:
    """Live mode against the sandbox process (any non-empty credentials), callbacks to the bot."""
    return {
        "FOTA_PUBLIC_URL": f"http://127.0.0.1:{bot_port}",
        "THINGSPACE_URL": sandbox_url,
        "THINGSPACE_CLIENT_ID": "bench-key",
        "THINGSPACE_CLIENT_SECRET": "bench-secret",
        "THINGSPACE_USERNAME": "bench-user",
        "THINGSPACE_PASSWORD": "bench-password",
        "THINGSPACE_ACCOUNT": SANDBOX_ACCOUNT,
    }


async def register_callback(env: dict[str, str], work: Path) -> None:
    """ThingSpace learns where to call back the way an operator tells it: by the CLI."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "register-callback", env=env, cwd=work,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    if process.returncode != 0:
        raise RuntimeError(f"register-callback failed: {output.decode(errors='replace')}")


def cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) a process has used so far; None where /proc is not there.

    On a shared 2-core machine wall-clock figures move with whatever else runs; CPU per request
    is the bot's own cost, so it is shown beside them.
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # Fields 14 and 15 of /proc/PID/stat (utime, stime), counted after the command's ")".
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuWatch:
    """CPU seconds a process spends inside an `async with` block (`used` after it)."""

    def __init__(self, pid: int):
        self.pid = pid
        self.used: float | None = None
        self._start: float | None = None

    async def __aenter__(self) -> CpuWatch:
        self._start = cpu_seconds(self.pid)
        return self

    async def __aexit__(self, *exc: object) -> None:
        end = cpu_seconds(self.pid)
        if self._start is not None and end is not None:
            self.used = end - self._start

    def per(self, count: int) -> float | None:
        """Milliseconds of CPU per request, for `count` requests."""
        return self.used * 1000 / count if self.used is not None and count else None


class StallWatch:
    """Reads the bot's loop-stall monitor from /metrics every `every` seconds while a run lasts;
    `longest` is the longest stall seen (the monitor's 5-second window covers the gaps)."""

    def __init__(self, bot_url: str, every: float = 2.0):
        self.url = f"{bot_url}/metrics"
        self.every = every
        self.longest = 0.0
        self.samples = 0
        # The monitor's count of stalls of 20 ms or more, at the first and the last read.
        self._over_20: list[float] = []
        self._task: asyncio.Task[None] | None = None

    @property
    def over_20(self) -> int | None:
        """Stalls of 20 ms or more between the first read and the last (None: not read twice)."""
        return int(self._over_20[-1] - self._over_20[0]) if len(self._over_20) > 1 else None

    async def _poll(self) -> None:
        async with aiohttp.ClientSession() as session:
            while True:
                await self.read(session)
                await asyncio.sleep(self.every)

    async def read(self, session: aiohttp.ClientSession) -> None:
        with contextlib.suppress(aiohttp.ClientError, OSError, ValueError):
            async with session.get(self.url) as response:
                for line in (await response.text()).splitlines():
                    if line.startswith('fota_event_loop_stall_max_seconds{window="5s"}'):
                        self.longest = max(self.longest, float(line.split()[-1]))
                        self.samples += 1
                    elif line.startswith('fota_event_loop_stalls_total{at_least="0.02"}'):
                        self._over_20.append(float(line.split()[-1]))

    async def __aenter__(self) -> StallWatch:
        self._task = asyncio.get_running_loop().create_task(self._poll())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        async with aiohttp.ClientSession() as session:
            await self.read(session)  # the last seconds of the run

    @property
    def ms(self) -> float:
        return self.longest * 1000


STALL_TARGET_MS = 50.0


def stall_figure(name: str, watch: StallWatch, baseline: StallWatch | None = None) -> Figure:
    return Figure(
        name,
        watch.ms,
        "ms",
        baseline.ms if baseline is not None and baseline.samples else None,
        target=f"≤ {STALL_TARGET_MS:.0f} ms",
        ok=watch.ms <= STALL_TARGET_MS and watch.samples > 0,
    )
