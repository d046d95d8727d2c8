"""Error kinds that decide how a failure ends.

UserError: the user can fix it (bad file, column, option, key); the CLI prints its one
line and exits 2. RowError: one row failed; it is recorded with a reason and the run
goes on. FatalLLMError: retrying cannot help (bad key, unknown model); the run stops
with every finished row kept.
"""


class UserError(Exception):
    """A mistake in input or options, reported as one line with exit code 2."""


class FatalLLMError(UserError):
    """The provider refuses every call (auth, unknown model, permission)."""


class RowError(Exception):
    """One row failed; `reason` is the short code stored on the row.

    `transient`: the fault may pass (rate limit, timeout, 5xx, dropped connection), so
    the row is marked failed and a rerun tries it again; otherwise the verdict is final.
    """

    def __init__(self, reason: str, detail: str = "", transient: bool = False) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.transient = transient


class AwaitingBatch(BaseException):  # noqa: N818 - not an error: a row that waits
    """A call's answer will come from a batch: the row waits and is not committed.

    A BaseException, so that a step's `except Exception` (which turns faults into row
    verdicts) lets it through to the runner, which leaves the row for the next pass.
    """
