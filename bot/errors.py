"""Everything that can go wrong, as a tree you can see.

    StoriesBotError                 every error of ours; `.user_message` is what a chat is told
    ├── InvalidUsername             the argument is not an Instagram username (no credit spent)
    ├── NoApiKey                    the chat has no key and the operator set no default
    ├── NotAllowed                  a non-admin tried an admin command
    ├── InvalidInput                any other bad argument (a key with spaces, a negative cap)
    ├── LimitReached                a cap, cooldown or in-flight limit refused the request
    └── ApiError                    the stories API said no, or could not be reached
        ├── InvalidApiKey           401 / 403
        ├── OutOfCredits            402, or a failure text about credits
        ├── RateLimited             429, with `.retry_after` seconds
        ├── AccountNotFound         `success: false` — no such user
        ├── AccountPrivate          `success: false` — the account is private
        ├── UpstreamUnavailable     5xx, timeouts, connection errors
        └── UnexpectedResponse      a shape we do not understand (kept for diagnosis)

Users see `.user_message`; logs see the class name and the request id. No message here ever
carries an API key.
"""

from __future__ import annotations


class StoriesBotError(Exception):
    """Base class. `kind` is a stable short name stored with failed requests."""

    kind = "error"

    def __init__(self, detail: str = "", *, user_message: str | None = None) -> None:
        super().__init__(detail or self.__class__.__name__)
        self.detail = detail
        self._user_message = user_message

    @property
    def user_message(self) -> str:
        return self._user_message or self.default_message()

    def default_message(self) -> str:
        return "Something went wrong. Please try again later."


class InvalidUsername(StoriesBotError):
    kind = "invalid_username"

    def default_message(self) -> str:
        return (
            "That is not an Instagram username. Use 1–30 letters, digits, '.' or '_', "
            "e.g. /stories natgeo"
        )


class NoApiKey(StoriesBotError):
    kind = "no_api_key"

    def default_message(self) -> str:
        return "This chat has no API key yet. A chat admin can set one."


class NotAllowed(StoriesBotError):
    kind = "not_allowed"

    def default_message(self) -> str:
        return "Only the chat's admins can do that."


class InvalidInput(StoriesBotError):
    kind = "invalid_input"

    def default_message(self) -> str:
        return self.detail or "That input is not valid."


class LimitReached(StoriesBotError):
    kind = "limit_reached"

    def __init__(self, detail: str = "", *, retry_after: float | None = None,
                 user_message: str | None = None) -> None:
        super().__init__(detail, user_message=user_message)
        self.retry_after = retry_after

    def default_message(self) -> str:
        return self.detail or "A limit was reached. Please try again later."


class ApiError(StoriesBotError):
    kind = "api_error"

    def __init__(self, detail: str = "", *, status: int | None = None,
                 api_request_id: str | None = None, user_message: str | None = None) -> None:
        super().__init__(detail, user_message=user_message)
        self.status = status
        self.api_request_id = api_request_id


class InvalidApiKey(ApiError):
    kind = "invalid_key"

    def default_message(self) -> str:
        return "The stories API rejected this chat's API key. A chat admin can set a new one."


class OutOfCredits(ApiError):
    kind = "out_of_credits"

    def default_message(self) -> str:
        return "This chat's API key is out of credits. Top up at https://eternalsocial.dev."


class RateLimited(ApiError):
    kind = "rate_limited"

    def __init__(self, detail: str = "", *, retry_after: float | None = None,
                 status: int | None = 429, api_request_id: str | None = None) -> None:
        super().__init__(detail, status=status, api_request_id=api_request_id)
        self.retry_after = retry_after

    def default_message(self) -> str:
        wait = f"{round(self.retry_after)} s" if self.retry_after else "a minute"
        return f"The stories API is busy. Try again in {wait}."


class AccountNotFound(ApiError):
    kind = "not_found"

    def default_message(self) -> str:
        return "No Instagram account has that username."


class AccountPrivate(ApiError):
    kind = "private"

    def default_message(self) -> str:
        return "That Instagram account is private, so its stories cannot be fetched."


class UpstreamUnavailable(ApiError):
    kind = "unavailable"

    def default_message(self) -> str:
        return "The stories API is unavailable right now. Please try again in a few minutes."


class UnexpectedResponse(ApiError):
    kind = "unexpected"

    def default_message(self) -> str:
        return "The stories API sent an answer the bot does not understand. Try again later."


ERROR_KINDS: dict[str, type[StoriesBotError]] = {
    cls.kind: cls
    for cls in (
        StoriesBotError, InvalidUsername, NoApiKey, NotAllowed, InvalidInput, LimitReached,
        ApiError, InvalidApiKey, OutOfCredits, RateLimited, AccountNotFound, AccountPrivate,
        UpstreamUnavailable, UnexpectedResponse,
    )
}


def error_from_kind(kind: str, detail: str = "") -> StoriesBotError:
    """Rebuild an error from its stored `kind` (used when a failed request is re-read)."""
    return ERROR_KINDS.get(kind, StoriesBotError)(detail)
