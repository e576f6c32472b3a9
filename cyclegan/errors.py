"""The one exception family users see.

The CLI catches ``CycleGANError`` and prints its message on one line; anything else is a bug and
keeps its traceback. Messages name the file or value at fault and what to do about it.
"""

import errno
import signal


class CycleGANError(Exception):
    """A problem the user can fix: bad input, a bad flag, a broken run folder."""


class DataError(CycleGANError):
    """An image folder or image file that cannot be used."""


class ConfigError(CycleGANError):
    """A configuration value or combination that cannot work."""


class CheckpointError(CycleGANError):
    """A run folder or weight file that is missing, broken or does not match."""


class DownloadError(CycleGANError):
    """A file that could not be downloaded, or arrived incomplete or different from what was expected."""


class TrainingInterrupted(CycleGANError):
    """Training stopped on request (Ctrl-C, SIGTERM, the app) after saving a resumable checkpoint. Here
    rather than in train/ so that the command line can map it to its exit status without importing torch.

    ``exit_status`` is what a shell reports for the signal that asked: 130 (SIGINT) or 143 (SIGTERM).
    """

    def __init__(self, message: str, exit_status: int = 128 + signal.SIGINT) -> None:
        super().__init__(message)
        self.exit_status = exit_status


class RunLockedError(CheckpointError):
    """A run folder that another trainer is writing."""


class DiskFullError(CycleGANError):
    """A write that failed because the disk (or the user's quota) is full; what was there before is kept."""

    @classmethod
    def of(cls, exc: BaseException, path: object) -> "DiskFullError | None":
        """The one-line error for ``exc`` when it is a full disk while writing ``path`` (None otherwise)."""
        if not isinstance(exc, OSError) or exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            return None
        return cls(f"disk full while writing {path} ({exc.strerror}); nothing was left half-written and the previous "
                   "file, if any, is kept: free some space and run the command again")
