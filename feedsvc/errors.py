"""The base of failures that explain themselves: the CLI prints such a message as it is, on one line."""


class ExplainedFailure(Exception):
    """A failure whose message says what went wrong and what to do about it."""
