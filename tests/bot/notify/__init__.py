"""Tests of `bot/notify/`: the notifier's events and the outbox sender."""
