"""One error hierarchy for Atelier.

Every error carries the message a person should read (`str(err)`); none of them ever holds a secret.
The command line maps the classes to exit codes; the Discord layer shows the message privately.
"""

from __future__ import annotations

from bot.redaction import redact


class AtelierError(Exception):
    """Base class: the message is safe to show to a user."""


class InputError(AtelierError):
    """The request itself is wrong (bad image, unknown filter, over-long prompt...). Nothing was sent.

    Like a Refusal, it may carry a msgid and its params (`InputError(N_("The {label} is empty."), label=...)`), so a
    member is told it in their language."""

    def __init__(self, message: str, /, **params: object) -> None:
        super().__init__(message.format(**params) if params else message)
        self.msgid = message
        self.params = params


class ConfigError(AtelierError):
    """The configuration cannot serve the request (no key, unknown provider...). Nothing was sent."""


class ProviderError(AtelierError):
    """A provider call went wrong. `retryable` says whether the same call may succeed later."""

    retryable: bool = False

    def __init__(self, provider: str, message: str, *, status: int | None = None) -> None:
        # Provider text becomes Atelier's here: whatever key it echoes never gets further.
        message = redact(message)
        super().__init__(f"{provider}: {message}")
        self.provider = provider
        self.detail = message
        self.status = status


class ProviderAuthError(ProviderError):
    """401/403: the key was rejected or the account needs attention."""


class ProviderRejectedError(ProviderError):
    """4xx validation error: the provider refused the request; its own message is kept."""


class ModelRetiredError(ProviderRejectedError):
    """The model's own endpoint says the model is gone (404/410, or an answer saying it is retired). Nothing
    was created there, so the job may go to the next provider."""

    def __init__(self, provider: str, message: str, *, model: str, instead: str, status: int | None = None) -> None:
        super().__init__(provider, message, status=status)
        self.model = model
        self.instead = instead  # what the operator should set instead, e.g. "NOVITA_MODEL=seedream-5.0-lite"


class ProviderUnavailableError(ProviderError):
    """5xx, timeouts, connection errors or rate limits that outlasted our retries."""

    retryable = True
    # False only when the request surely never reached the provider (the connection could not be opened).
    sent: bool = True


class ProviderProtocolError(ProviderError):
    """The provider answered something we cannot understand (malformed JSON, unknown status)."""


class MalformedResponseError(ProviderProtocolError):
    """A body that should be JSON is not: often a truncated answer, so a poll may try again a few times."""


class OutputError(ProviderError):
    """An output image could not be downloaded or is not an image."""


class StoreBusyError(AtelierError):
    """Another program held the database locked for longer than this call could wait. Nothing was changed."""


class StoreUnreachableError(AtelierError):
    """The database could not be opened at all (no such place, no permission, no server answering). Nothing was
    changed."""


class QuotaError(AtelierError):
    """The user's quota does not allow this job. Nothing was sent and nothing was charged."""

    def __init__(self, message: str, *, kind: str, limit: int, used: int, resets_at: object = None) -> None:
        super().__init__(message)
        self.kind = kind  # "daily" or "concurrent"
        self.limit = limit
        self.used = used
        self.resets_at = resets_at  # datetime (UTC) for daily limits


class Term(str):
    """A Refusal parameter that is itself a catalog text (a job's state, an attachment's label): the member reads
    it in their language too, where the sentence around it is translated. It may have parameters of its own
    (`Term(N_("{n} images"), n=3)`), Terms too; as a str it is the English text, filled in."""

    msgid: str
    params: dict[str, object]

    def __new__(cls, msgid: str, /, **params: object) -> Term:
        term = super().__new__(cls, msgid.format(**params) if params else msgid)
        term.msgid, term.params = msgid, params
        return term


class Refusal(AtelierError):
    """A clear answer to a member who asked for something Atelier will not do (a command turned off, a cooldown,
    someone else's result). Shown privately; nothing was charged.

    `Refusal(N_("… {left} …"), left=2)` reads "… 2 …" in English and keeps its msgid and params, so the member is
    told it in their language (bot.discord_errors); a refusal built as a finished string is looked up as it is."""

    def __init__(self, message: str, /, **params: object) -> None:
        super().__init__(message.format(**params) if params else message)
        self.msgid = message
        self.params = params


class RestartingError(Refusal):
    """The process is draining after SIGTERM (bot.ops.drain): it records no new job. Nothing was charged."""

    def __init__(self) -> None:
        super().__init__("Atelier is restarting, so it did not start this (nothing was charged). Please try again "
                         "in a minute.")
