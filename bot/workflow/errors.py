"""Errors a user causes. The message is the sentence they read in Slack."""


class UserError(Exception):
    """Something the user asked cannot be done; nothing was changed."""
