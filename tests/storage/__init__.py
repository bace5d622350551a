"""Tests of `storage/`: the model, the store and its migrations, the outbox."""
