"""Tests of `commands/blocks/`: the Block Kit builders against Slack's limits."""
