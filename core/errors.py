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


class AccountError(ConfigError):
    """The provider refused the account or the way we reach it, not a recipient: bad
    credentials (401/403), a host that does not resolve or refuses connections, a TLS
    failure, a sender domain not verified, an SMTP policy refusal (5.7.26, 5.7.515,
    5.7.1 policy, 5.7.25). Sending pauses the whole issue at once: retrying recipients
    or suppressing them would only spend their attempts on our own mistake."""


class DatabaseUnavailable(KpdigestError):
    """The database URL is unusable: it does not parse, names a driver that is not
    installed, or the server does not answer."""

    exit_code = 11
