"""Exceptions Lightning users import from ``utilities.exceptions``."""


class MisconfigurationException(Exception):
    """A Trainer, module or callback was configured in a way that cannot work."""
