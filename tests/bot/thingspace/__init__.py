"""Tests of `bot/thingspace/`: the ThingSpace client and its contract with Verizon's SDK."""
