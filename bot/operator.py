"""`fota-bot campaigns list | show ID | export ID`, `history ID`, `callback-url`: the operator's
views of the database."""

from __future__ import annotations

import argparse
import sys

from bot.notify.reports import devices_csv
from bot.settings import Settings
from storage import history, waves
from storage.model import Campaign, CampaignNotFound
from storage.store import Store


def run_campaigns(settings: Settings, args: argparse.Namespace) -> int:
    if not settings.db_path.exists():
        print(f"No database at {settings.db_path} (FOTA_DB).", file=sys.stderr)
        return 1
    store = Store.open(settings.db_path)
    try:
        if args.view == "list":
            campaigns = store.list_campaigns(scope="all" if args.all else "active", limit=1000)
            if not campaigns:
                print("No campaigns." if args.all else "No active campaigns (--all shows finished ones).")
            for c in campaigns:
                print(
                    f"{c.ref:<8} {c.state.value:<24} {c.device_count:>7} devices  {c.firmware_to:<24} "
                    f"account {c.account}  by {c.requester}  {c.created_at:%Y-%m-%d %H:%M}"
                )
            return 0
        campaign = store.find_campaign(args.id)
        if args.view == "show":
            counts = store.device_counts(campaign.id)
            print(f"{campaign.ref}  {campaign.state.value}")
            for label, value in (
                ("requester", campaign.requester),
                ("account", campaign.account),
                ("firmware", f"{campaign.firmware_name} ({campaign.firmware_from} -> {campaign.firmware_to})"),
                ("protocol", campaign.protocol),
                ("dates", f"{campaign.start_date} .. {campaign.end_date}"),
                ("windows", ", ".join(str(w) for w in campaign.windows) or "any time"),
                ("name at ThingSpace", campaign.thingspace_name),
                ("ThingSpace id", campaign.thingspace_id or "-"),
                ("devices", " · ".join(f"{k} {v}" for k, v in counts.items() if v) or "none"),
                ("content hash", campaign.content_hash),
            ):
                print(f"  {label:<20} {value}")
            for line in plan_lines(store, campaign):
                print(f"  {line}")
            print("  audit:")
            for row in store.audit(campaign.id):
                print(f"    {row['at']}  {row['from_state'] or '-':>22} -> {row['to_state']:<22} "
                      f"{row['actor']}: {row['reason']}")
            return 0
        text = devices_csv(store, campaign)
        if args.out:
            try:
                args.out.write_text(text)
            except OSError as exc:
                print(f"Cannot write {args.out}: {exc.strerror or exc}"
                      f"{' (the folder must exist)' if isinstance(exc, FileNotFoundError) else ''}.", file=sys.stderr)
                return 1
            print(f"wrote {campaign.device_count} devices to {args.out}", file=sys.stderr)
        else:
            sys.stdout.write(text)
        return 0
    except CampaignNotFound as exc:
        print(str(exc), file=sys.stderr)
        return 1
    finally:
        store.close()


def plan_lines(store: Store, campaign: Campaign) -> list[str]:
    """A staged rollout's plan for `campaigns show`: its rules, then each wave and where it stands."""
    stored = waves.plan_of(store, campaign.parent_id or campaign.id)
    if stored is None:
        return []
    lines = [f"{'plan':<20} {stored.plan.describe()}"]
    total = len(stored.waves)
    for wave in stored.waves:
        head = f"wave {wave.number}/{total} {wave.label}"
        where = "not started"
        if wave.campaign_id is not None:
            child = store.campaign(wave.campaign_id)
            counts = store.device_counts(child.id)
            done = " · ".join(f"{k} {v}" for k, v in counts.items() if v)
            by = f", started by {wave.promoted_by}" if wave.promoted_by else ""
            where = f"FB-{child.id} {child.state.value} ({done}){by}"
        lines.append(f"{head:<20} {wave.size:>7} devices  {where}")
    if stored.halted:
        lines.append(f"{'halted':<20} {stored.halted_at:%Y-%m-%d %H:%M} by {stored.halted_by}: {stored.halt_reason}")
    return lines


def run_history(settings: Settings, ident: str) -> int:
    """The audit trail of one campaign, oldest first, a line per entry (tab-free, for grep)."""
    if not settings.db_path.exists():
        print(f"No database at {settings.db_path} (FOTA_DB).", file=sys.stderr)
        return 1
    store = Store.open(settings.db_path)
    try:
        campaign = store.find_campaign(ident)
        print(f"{campaign.ref}  {campaign.state.value}  ThingSpace id {campaign.thingspace_id or '-'}")
        for entry in history.load(store, campaign.id):
            detail = f"  {entry.detail}" if entry.detail else ""
            print(f"  {entry.at:%Y-%m-%d %H:%M:%S}  {entry.actor:<12} {entry.what}{detail}")
        return 0
    except CampaignNotFound as exc:
        print(str(exc), file=sys.stderr)
        return 1
    finally:
        store.close()


def run_callback_url(settings: Settings) -> int:
    """The full callback URL, token included, for an operator registering it by hand.

    It is printed on standard output only (never logged): whoever holds it can post callbacks.
    The token is FOTA_CALLBACK_TOKEN, else the one kept in FOTA_DB (generated there now if this
    runs before the first `serve`, which then uses the same one)."""
    if not settings.public_url:
        print("FOTA_PUBLIC_URL is not set: the callback URL is {FOTA_PUBLIC_URL}/thingspace/callbacks/{token}; "
              "set it to the bot's public https:// address.", file=sys.stderr)
        return 2
    if settings.callback_token:
        token = settings.callback_token.reveal()
    else:
        store = Store.open(settings.db_path)
        try:
            token = store.callback_token()
        finally:
            store.close()
    print(settings.callback_url(token))
    if settings.sandbox_mode:
        print("(sandbox mode: `fota-bot serve` registers its own in-process URL with the simulator; "
              "register this one with ThingSpace once live)", file=sys.stderr)
    return 0
