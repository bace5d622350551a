"""Run the benchmarks: `python -m bench.run [--only ack,ingest,economy,scale,preflight] [--quick] …`.

Prints each figure beside its baseline and its target, then appends the run, with a
description of the machine, to bench/RESULTS.md (`--no-record` to skip). Loopback only; every
run is bounded in requests and in time. Not part of the test suite: absolute times depend on
the machine, which is why each figure has a baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys
import time
import traceback

from bench.common import HISTORY, QUICK_HISTORY, RESULTS, Section, append_results, machine

BENCHMARKS = ("ack", "ingest", "economy", "scale", "preflight")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--only", default=",".join(BENCHMARKS), help="comma-separated: " + ", ".join(BENCHMARKS)
    )
    parser.add_argument(
        "--quick", action="store_true", help="short runs, to check the benchmarks work"
    )
    parser.add_argument(
        "--ack-seconds", type=float, help="ack: seconds per server (default 30; quick 5)"
    )
    parser.add_argument("--ack-clients", type=int, default=20)
    parser.add_argument(
        "--callbacks", type=int, help="ingest: callbacks per server (default 100,000; quick 10,000)"
    )
    parser.add_argument("--senders", type=int, default=32)
    parser.add_argument(
        "--economy-seconds", type=float, help="economy: seconds of callbacks (default 60; quick 15)"
    )
    parser.add_argument(
        "--economy-devices", type=int, help="economy: campaign size (default 10,000; quick 2,000)"
    )
    parser.add_argument(
        "--economy-callbacks", type=int, help="economy: callbacks (default 30,000; quick 6,000)"
    )
    parser.add_argument(
        "--scale-devices", type=int, help="scale: devices (default 100,000; quick 20,000)"
    )
    parser.add_argument(
        "--history",
        help="ack, ingest: finished campaigns stored before each run, comma-separated, each "
        "CAMPAIGNS or CAMPAIGNSxDEVICES (default 0,10000x100,100000x100; quick 0,2000x10)",
    )
    parser.add_argument("--no-record", action="store_true", help=f"do not append to {RESULTS.name}")
    return parser


def _history(args: argparse.Namespace) -> tuple[tuple[int, int], ...]:
    if not args.history:
        return QUICK_HISTORY if args.quick else HISTORY
    sizes = []
    for item in args.history.split(","):
        campaigns, _, devices = item.strip().partition("x")
        sizes.append((int(campaigns), int(devices or 100) if int(campaigns) else 0))
    return tuple(sizes)


async def _one(name: str, args: argparse.Namespace, history: tuple[tuple[int, int], ...]) -> Section:
    quick = args.quick
    if name == "ack":
        from bench import ack

        return await ack.run(
            seconds=args.ack_seconds or (5 if quick else 30),
            clients=args.ack_clients,
            history=history,
        )
    elif name == "ingest":
        from bench import ingest

        return await ingest.run(
            total=args.callbacks or (10_000 if quick else 100_000),
            senders=args.senders,
            history=history,
        )
    elif name == "economy":
        from bench import economy

        return await economy.run(
            seconds=args.economy_seconds or (15 if quick else 60),
            devices=args.economy_devices or (2_000 if quick else 10_000),
            callbacks=args.economy_callbacks or (6_000 if quick else 30_000),
        )
    else:
        from bench import scale

        return await scale.run(
            devices=args.scale_devices or (20_000 if quick else 100_000), history=max(history)
        )


async def _run(args: argparse.Namespace, selected: list[str]) -> list[Section]:
    history = _history(args)
    sections: list[Section] = []
    for name in selected:
        if name == "preflight":
            continue  # its own report format: run by main() after the others
        started = time.perf_counter()
        try:
            section = await _one(name, args, history)
        except Exception as exc:
            # One benchmark failing must not lose the others' figures: say so in the results.
            traceback.print_exc()
            section = Section(f"{name}: did not complete")
            section.note(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            section.failed = True
        section.seconds = time.perf_counter() - started
        section.print()
        sections.append(section)
    return sections


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    selected = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in selected if name not in BENCHMARKS]
    if unknown:
        print(
            f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}",
            file=sys.stderr,
        )
        return 2
    host = machine()  # before the load: the load average says how busy the machine already was
    print("machine: " + "; ".join(f"{k} {v}" for k, v in host.items() if v))
    sections = asyncio.run(_run(args, selected))
    command = "python -m bench.run" + (
        " " + shlex.join(argv if argv is not None else sys.argv[1:])
        if (argv or sys.argv[1:])
        else ""
    )
    if not args.no_record:
        append_results(sections, command=command, host=host)
        print(f"\nappended to {RESULTS}")
    if "preflight" in selected:
        from bench import bench_preflight

        rows = asyncio.run(bench_preflight.main([1_000] if args.quick else [1_000, 100_000]))
        text = bench_preflight.report(rows)
        print(text)
        if not args.no_record:
            with RESULTS.open("a", encoding="utf-8") as out:
                out.write(text)
    missed = [f.name for s in sections for f in s.figures if f.ok is False]
    if missed:
        print("targets missed: " + "; ".join(missed))
    return 1 if any(s.failed for s in sections) else 0


if __name__ == "__main__":
    raise SystemExit(main())
