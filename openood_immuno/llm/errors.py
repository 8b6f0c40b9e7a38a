"""The two ways a backend call can fail."""


class BackendUnavailable(RuntimeError):
    """The backend cannot work at all (model not found, endpoint down, key refused, given up);
    the message says why and what to do."""


class RequestFailed(RuntimeError):
    """No usable answer this time (timeout, HTTP 5xx/429, broken answer): retrying may help."""
