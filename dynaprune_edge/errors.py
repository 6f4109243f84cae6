"""Errors a user can cause. The CLI prints them (and the system's OSError and MemoryError:
a full disk, a folder not writable) as one line and exits non-zero; anything else reaching
the top level is a bug in dpedge and keeps its traceback."""


class DpedgeError(Exception):
    """Base of every error caused by bad input (files, options, checkpoints)."""


class ConfigError(DpedgeError):
    """An option or configuration value that cannot work (unknown name, bad size...)."""


class DataError(DpedgeError):
    """A data file that is missing, malformed, too short or holds non-finite values."""


class CheckpointError(DpedgeError):
    """A file that is not a dpedge checkpoint, or one that would run code when loaded."""
