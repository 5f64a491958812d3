"""Errors a user can fix. ``videoktr`` prints their message without a traceback and exits with code 2."""


class UserError(Exception):
    """Bad input or configuration; the message names the file/field at fault and what to change."""
