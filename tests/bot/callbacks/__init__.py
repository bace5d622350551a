"""Tests of `bot/callbacks/`: ThingSpace's callbacks parsed and received."""
