"""Tests of `bot/workflow/`: the services behind the listeners."""
