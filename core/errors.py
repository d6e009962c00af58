"""Named exceptions of the library; the CLI and the web app turn them into messages."""


class KpdigestError(Exception):
    """Base of every error the shells report as a clean message instead of a traceback."""

    exit_code = 1


class ConfigError(KpdigestError):
    """A setting is missing or wrong; the message names the key."""

    exit_code = 2


class NotFound(KpdigestError):
    """A named thing (issue, feed, subscriber, queue item) does not exist."""

    exit_code = 3


class StateError(KpdigestError):
    """The thing exists but is not in a state that allows the action."""

    exit_code = 4


class InvalidInput(KpdigestError):
    """User input (an address, a URL, a CSV row) is not acceptable."""

    exit_code = 5


class FetchError(KpdigestError):
    """A feed or page could not be fetched or parsed."""


class UnsafeURL(InvalidInput):
    """A URL points at a private, loopback or link-local address (SSRF guard)."""


class TransportError(KpdigestError):
    """A transport could not hand a batch to the provider."""


class CheckFailed(KpdigestError):
    """An issue failed its pre-send checks."""

    exit_code = 6
