"""`/fota help`: what every subcommand does and the schedule keys' rules (pure text)."""

from __future__ import annotations

USAGE_HINT = (
    "schedule key=value … | status ID | list [active|all|mine] | cancel ID | "
    "firmware [account] | devices ID [failed] | history ID | retry ID [wN] | help"
)

# One mrkdwn text under Slack's 3,000-character limit for a section block, so it
# can be sent as a message's text or as a single section.
HELP_TEXT = """\
*`/fota` schedules ThingSpace firmware (FOTA) campaigns, after approval in the approval channel.*
`/fota` or `/fota schedule` alone opens a form with the same fields as below.

*`/fota schedule key=value …`* request a campaign, e.g.
`/fota schedule firmware=SEQUANSCommunications_GM01Q_SR1.2.0.0-10512_SR1.2.0.0-10657 \
from=SR1.2.0.0-10512 to=SR1.2.0.0-10657 start=tomorrow window=18-22 \
devices=354658090353977,490154203237518 name="Q3 rollout"`
• `firmware` (required): the name exactly as `/fota firmware` lists it
• `from`, `to`: the versions now and after, different; leave both out to take them from the firmware list
• `protocol`: `LWM2M` (default), `OMA` or `HTTP`
• `start`: `YYYY-MM-DD`, `today`, `tomorrow` or `+Nd` (N days from today); not in the past; default today
• `end`: same forms, not before `start`; default `start` + 7 days
• `window`: UTC hours `18-22` or `18-22,2-6`: start 0–23, end 1–24, at least 4 hours, no overlaps, \
not across midnight (`20-24,0-4`); default any time
• `devices` (required): 15-digit IMEIs with a valid check digit, separated by commas \
or spaces; duplicates are dropped. Long lists: upload a CSV or text file in the form (`/fota`)
• `name`: up to 80 characters, no `[` `]`; the campaign is named `NAME [FB-12]`
• `account`: billing account, digits and dashes (`0642233522-00001`); default the bot's account
• `licence`: `none` (default) or `auto`: ThingSpace may give unlicensed devices the account's unused licences
• Staged rollout: `canary` (a first wave of N devices), `waves` (cumulative shares after it, ending at `100%`, e.g. `5%,25%,100%`), `success` (share a wave must pass, default `95%`), `soak` (`2h`: wait after a wave), `halt` (`5%` or `3` failed devices of a wave stop the rollout; default: when a wave can no longer pass), `promote` (`manual`: an approver clicks Promote; `auto`: the bot promotes a wave that passed); *Halt* stops it, an approver resumes it with a reason; each wave is a campaign `NAME [FB-12 w2/4]`
Values with spaces go in double quotes. Dates and hours are UTC. Every problem is listed at once.

*`/fota status ID`* where a campaign stands, e.g. `/fota status FB-12`
*`/fota list [active|all|mine]`* campaigns: running ones (default), all, or yours
*`/fota cancel ID`* cancel a request or a campaign (you confirm first), e.g. `/fota cancel FB-12`
*`/fota firmware [account]`* firmware the account can install, with from/to versions
*`/fota devices ID [failed]`* each device's state, or only the failed ones, e.g. `/fota devices FB-12 failed`
*`/fota history ID`* who decided what and when, every state change, e.g. `/fota history FB-12`
*`/fota retry ID [wN]`* request the failed devices of a finished campaign (or staged rollout, or its wave N) again: the form opens filled in from it; approval as for any request
*`/fota help`* this text

`ID` is the bot's reference, shown as `Ref FB-12` on every card (`FB-12`, `fb-12` and `12` all work), \
or ThingSpace's campaign id.\
"""
