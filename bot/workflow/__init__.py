"""The campaign workflow: requests, approvals, the one submission path, reconciliation."""
