"""Tests of `bot/standins/`: the Slack stand-in and the ThingSpace sandbox."""
