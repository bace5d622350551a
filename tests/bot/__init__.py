"""Tests of `bot/`: settings, logs, the command line, the servers and their guards."""
