"""fota-bot: ThingSpace FOTA campaigns scheduled from Slack behind human approval."""
