"""Who goes in which wave: a pure, deterministic function of the plan and the eligible devices.

The same request always gives the same waves, on every machine and after every restart: the
plan is bound into the content hash, so an assignment that changed between the card and the
submission would void the approvals.

- The canary is spread across the request's groups (make, model, current firmware): it takes
  devices from each group in turn, so with N at least the number of groups every group is in
  it, and no group dominates it.
- The devices after the canary are ordered by a hash of their IMEI (not by IMEI, whose ranges
  follow manufacturing batches and sales channels) and cut at the cumulative shares, so each
  wave is a cross-section of the fleet rather than one batch.
- Wave k ends at ceil(share_k × remaining) devices. A share too small to reach one more device
  gives no wave of its own: a wave of nobody would wait, soak and be promoted for nothing.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Sequence

from storage.plan import WHOLE, DeviceFacts, RolloutPlan, WaveAssignment, percent_text


def _spread_key(imei: str) -> str:
    return hashlib.sha256(imei.encode()).hexdigest()


def _radius(devices: Iterable[DeviceFacts]) -> tuple[tuple[str, str, str, int], ...]:
    counts = Counter(d.group for d in devices)
    rows = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return tuple((make, model, firmware, n) for (make, model, firmware), n in rows)


def _canary(devices: Sequence[DeviceFacts], size: int) -> list[DeviceFacts]:
    """`size` devices taken from each group in turn (groups in name order)."""
    groups: dict[tuple[str, str, str], list[DeviceFacts]] = {}
    for device in sorted(devices, key=lambda d: _spread_key(d.imei)):
        groups.setdefault(device.group, []).append(device)
    queues = [groups[key] for key in sorted(groups)]
    picked: list[DeviceFacts] = []
    depth = 0
    while len(picked) < size:
        for queue in queues:
            if depth < len(queue):
                picked.append(queue[depth])
                if len(picked) == size:
                    break
        depth += 1
    return picked


def assign(plan: RolloutPlan, eligible: Sequence[DeviceFacts]) -> tuple[WaveAssignment, ...]:
    """The waves of `plan` over `eligible` (each IMEI once; duplicates are a caller's error).

    An empty device list gives no wave. A canary as large as the list is the only wave.
    """
    imeis = [d.imei for d in eligible]
    if len(set(imeis)) != len(imeis):
        raise ValueError("the eligible devices must be distinct")
    if not eligible:
        return ()
    chunks: list[tuple[str, list[DeviceFacts]]] = []
    rest: list[DeviceFacts] = list(eligible)
    if plan.canary:
        canary = _canary(eligible, min(plan.canary, len(eligible)))
        chosen = {d.imei for d in canary}
        chunks.append(("canary", canary))
        rest = [d for d in eligible if d.imei not in chosen]
    rest.sort(key=lambda d: _spread_key(d.imei))
    done = 0
    for share in plan.waves:
        end = -(-len(rest) * share // WHOLE)
        if end > done:
            chunks.append((percent_text(share), rest[done:end]))
            done = end
    return tuple(
        WaveAssignment(
            number=number,
            label=label,
            devices=tuple(d.imei for d in members),
            radius=_radius(members),
        )
        for number, (label, members) in enumerate(chunks, start=1)
    )
