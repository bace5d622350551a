"""End to end: through the real HTTP app with Slack-signed requests, the recording Slack
stand-in and the sandbox (see tests/support/)."""
