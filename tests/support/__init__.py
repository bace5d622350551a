"""Test support: Slack-signed request bodies (`slack`) and in-loop HTTP servers (`servers`)."""
