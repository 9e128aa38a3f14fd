"""Exceptions of the trellis client.

TrellisError is the base. Errors of the manager arrive as Connect codes and
become the classes below (never matched by their text). A task or call that
ran and did not succeed raises TaskError (CallError for calls), which
carries its Result: kind, exit code, message, stderr tail, traceback.
"""


class TrellisError(Exception):
    """TrellisError is the base of the client's exceptions."""


class AuthError(TrellisError):
    """AuthError: the manager refused the secret."""


class InvalidError(TrellisError, ValueError):
    """InvalidError: a request the manager (or the client) cannot accept."""


class NotFoundError(TrellisError):
    """NotFoundError: no such task, file or library."""


class SessionEnded(TrellisError):
    """SessionEnded: the manager ended this client's session (the client was
    away longer than its --client-grace) and cancelled its tasks."""


class ManagerUnreachable(TrellisError):
    """ManagerUnreachable: the manager did not answer."""


class ManagerLost(TrellisError):
    """ManagerLost: the manager restarted and forgot this session's tasks, or
    stayed unreachable for the client's manager_timeout."""


class ClusterClosed(TrellisError):
    """ClusterClosed: the client was closed before the task ended."""


class TaskError(TrellisError):
    """TaskError: a task ran and did not succeed. result is its Result."""

    def __init__(self, result):
        self.result = result
        self.kind = result.kind
        self.exit_code = result.exit_code
        self.message = result.message
        self.stderr = result.stderr
        super().__init__(self._text())

    def _text(self):
        r = self.result
        text = "task %s (%s): %s" % (r.task_id, r.name, r.kind)
        if r.kind == "failed" and r.exit_code and not r.message:
            text += " with exit code %d" % r.exit_code
        if r.message:
            text += ": " + r.message
        tail = r.stderr.decode("utf-8", "replace").strip()
        if tail:
            text += "\n--- stderr (tail) ---\n" + tail[-2000:]
        return text


class CallError(TaskError):
    """CallError: a call failed. traceback is the remote traceback, when the
    library gave one; it is shown as such, apart from the local one."""

    def __init__(self, result):
        self.traceback = result.traceback
        super().__init__(result)

    def _text(self):
        r = self.result
        text = "call %s: %s" % (r.name, r.kind)
        if r.message:
            text += ": " + r.message
        if r.traceback:
            text += "\n--- remote traceback ---\n" + r.traceback.rstrip()
        tail = r.stderr.decode("utf-8", "replace").strip()
        if tail:
            text += "\n--- stderr (tail) ---\n" + tail[-2000:]
        return text


_CODES = {
    "unauthenticated": AuthError,
    "invalid_argument": InvalidError,
    "resource_exhausted": InvalidError,
    "not_found": NotFoundError,
    "failed_precondition": SessionEnded,
    "unavailable": ManagerUnreachable,
}


def from_code(code, message):
    """from_code turns a Connect error code into the package's exception."""
    return _CODES.get(code, TrellisError)(message)
