"""Tests of `commands/`: parsing, the modal, the Block Kit builders."""
