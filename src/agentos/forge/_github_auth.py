"""How the GitHub client authenticates: a token, or a GitHub App (a JWT signed with the App's key, exchanged
for an installation token that is refreshed before it expires). PyJWT and cryptography load only for an App."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import structlog

from agentos.forge._github_policy import JSON, Exchange, GitHubError
from agentos.forge.base import ForgeError, NotFound
from agentos.redact import get_default

if TYPE_CHECKING:  # PyJWT and cryptography (8 MB resident) load only for GitHub App auth, in AppAuth
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

__all__ = ["AppAuth", "Auth", "TokenAuth", "load_app_key"]

_log = structlog.get_logger("agentos.forge.github")


class Auth(Protocol):
    """Something that yields a bearer token. ``exchange(path, jwt)`` POSTs with another bearer (App auth)."""

    async def token(self, exchange: Exchange, now: float) -> str: ...

    def invalidate(self) -> bool:
        """Forget a cached token after a 401; True when a fresh one can be had (and the request retried)."""
        ...


class TokenAuth:
    """A fixed token: a fine-grained or classic PAT, or ``GITHUB_TOKEN``."""

    def __init__(self, token: str) -> None:
        if not token.strip():
            raise ForgeError("GitHub token is empty")
        self._token = token.strip()

    def __repr__(self) -> str:
        return "TokenAuth(token=***)"

    async def token(self, exchange: Exchange, now: float) -> str:
        return self._token

    def invalidate(self) -> bool:
        return False


def load_app_key(value: str) -> str:
    """The PEM text of a GitHub App private key given as PEM text or as the path of a ``.pem`` file.

    A PEM pasted into an environment variable with literal ``\\n`` escapes is accepted too. Errors
    never echo the value: it may be the key itself.
    """
    text = value.strip()
    if "-----BEGIN" not in text:
        path = Path(text).expanduser()
        if "\n" in text or not path.is_file():
            raise ForgeError(
                "GitHub App key (GITHUB_APP_KEY / credential github_app_key) is neither a PEM "
                "private key nor the path of a readable file"
            )
        try:
            text = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ForgeError(f"GitHub App key file {path} cannot be read: {exc.__class__.__name__}") from None
    elif "\n" not in text and "\\n" in text:
        text = text.replace("\\n", "\n")
    return text


def _rsa_key(private_key_pem: str) -> RSAPrivateKey:
    """The RSA private key of ``private_key_pem``, or a one-line :class:`ForgeError` saying what is wrong."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

    try:
        key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
    except TypeError:
        raise ForgeError("GitHub App private key is encrypted; give the unencrypted PEM GitHub generated") from None
    except (ValueError, UnsupportedAlgorithm):
        raise ForgeError(
            "GitHub App private key is not a readable PEM private key (the .pem file GitHub generated for the app)"
        ) from None
    if not isinstance(key, RSAPrivateKey):
        raise ForgeError("GitHub App private key is not an RSA key (GitHub signs apps with RS256)")
    return key


class AppAuth:
    """A GitHub App installation: a JWT (RS256, 9 minutes) buys an installation token (1 hour).

    The token is cached and replaced ``refresh_margin`` seconds (default 5 minutes) before its
    ``expires_at``, or after a 401. ``private_key`` is the app's PEM (see :func:`load_app_key`); a key
    that cannot sign raises :class:`ForgeError` here, not at the first request. Every minted token is
    given to the process-wide redactor. ``permissions`` are those GitHub granted the last token.
    """

    def __init__(
        self, app_id: int | str, private_key: str, installation_id: int, *, refresh_margin: float = 300.0
    ) -> None:
        self.app_id = str(app_id)
        self.installation_id = installation_id
        self.permissions: dict[str, str] = {}
        self.minted = 0
        self._key = _rsa_key(private_key)
        self._margin = refresh_margin
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        token = "***" if self._token else None
        return (
            f"AppAuth(app_id={self.app_id}, installation_id={self.installation_id}, token={token}, "
            f"minted={self.minted})"
        )

    @property
    def expires_at(self) -> float:
        """When the cached token expires (epoch seconds; 0 before the first)."""
        return self._expires_at

    def app_jwt(self, now: float) -> str:
        """The app's JWT: issued a minute in the past (clock drift), valid for 9 minutes, ``iss`` the app id."""
        import jwt

        claims = {"iat": int(now) - 60, "exp": int(now) + 540, "iss": self.app_id}
        return jwt.encode(claims, self._key, algorithm="RS256")

    async def token(self, exchange: Exchange, now: float) -> str:
        async with self._lock:
            if self._token is not None and now < self._expires_at - self._margin:
                return self._token
            route = "/app/installations/{id}/access_tokens"
            try:
                data = await exchange(f"/app/installations/{self.installation_id}/access_tokens", self.app_jwt(now))
            except NotFound:
                raise GitHubError(
                    f"installation {self.installation_id} of GitHub App {self.app_id} not found: "
                    "check github.installation_id (the number at the end of the installation's settings URL)",
                    status=404,
                    method="POST",
                    route=route,
                ) from None
            except GitHubError as exc:
                if exc.status != 401:
                    raise
                raise GitHubError(
                    f"GitHub refused the JWT of app {self.app_id} ({exc.message}): check github.app_id, "
                    "the private key and this machine's clock",
                    status=401,
                    method="POST",
                    route=route,
                ) from None
            if not isinstance(data, dict) or not isinstance(data.get("token"), str):
                raise GitHubError("installation token response has no token", method="POST", route=route)
            token = data["token"]
            assert isinstance(token, str)
            get_default().add(token)
            self._expires_at = _expiry(data.get("expires_at"), default=now + 3600)
            granted = data.get("permissions")
            self.permissions = {str(k): str(v) for k, v in granted.items()} if isinstance(granted, dict) else {}
            self._token = token
            self.minted += 1
            _log.info(
                "github_app_token_minted",
                app_id=self.app_id,
                installation_id=self.installation_id,
                expires_in=round(self._expires_at - now),
            )
            return token

    def invalidate(self) -> bool:
        self._token = None
        return True


def _expiry(value: JSON, *, default: float) -> float:
    """Epoch seconds of an ISO-8601 ``expires_at`` (``2025-01-01T01:00:00Z``), else ``default``."""
    if not isinstance(value, str):
        return default
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return default
