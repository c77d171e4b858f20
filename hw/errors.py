"""npugen's own errors: one root class, and what each kind means to a user.

Every error npugen raises on purpose derives from :class:`NpugenError` and carries the exit code
the ``npugen`` command reports it with (one line, ``npugen: error: <message>``). Anything else
that escapes the library (a ``ValueError`` from NumPy, a ``KeyError``) is a bug in npugen and is
left as a traceback with exit code 1, never reported as bad input.

- :class:`InputError` (exit 2): a bad argument, configuration or input file; also a
  ``ValueError``, so callers of the Python API catch it as one.
- :class:`ToolMissing` (exit 2): an optional tool is not installed; the message names the
  package.
- :class:`CheckFailed` (exit 1): a check npugen ran failed (a tool run, a simulation, a test, a
  bit-exactness comparison).
"""

from __future__ import annotations

__all__ = ["NpugenError", "InputError", "MissingSectionError", "ToolMissing", "CheckFailed"]


class NpugenError(Exception):
    """Root of npugen's own errors. ``exit_code`` is what the ``npugen`` command exits with."""

    exit_code = 1


class InputError(NpugenError, ValueError):
    """A bad argument, configuration value or input file; the message names it (exit 2)."""

    exit_code = 2


class MissingSectionError(InputError):
    """The configuration lacks the ``[softmax]`` or ``[attention]`` section a command needs.

    Parameters
    ----------
    cfg : GemmConfig or object with ``name``
        The configuration.
    section : str
        ``"softmax"`` or ``"attention"``.
    """

    def __init__(self, cfg, section: str):
        name = getattr(cfg, "name", cfg)
        super().__init__(f"configuration {name!r} has no [{section}] section")
        self.section = section

    @classmethod
    def check(cls, cfg, section: str) -> None:
        """Raise unless ``cfg`` has the section (``cfg.softmax`` / ``cfg.attention`` not None)."""
        if getattr(cfg, section, None) is None:
            raise cls(cfg, section)


class ToolMissing(NpugenError):
    """An external tool is not installed; the message names the package (exit 2)."""

    exit_code = 2


class CheckFailed(NpugenError):
    """A check npugen ran has failed: a tool, a simulation, a test (exit 1)."""

    exit_code = 1
