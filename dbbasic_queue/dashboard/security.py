"""Who may see the dashboard and who may act on it: basic auth, the loopback rule, CSRF tokens,
the security headers.

Without credentials the dashboard answers only requests made straight from this machine (a
loopback address and no proxy's forwarding header): a reverse proxy on the same machine
would otherwise make every visitor look local. Every action is a POST carrying a token that
only a page of this dashboard can hold: an HMAC, under a secret of the process (or given by
the app), of a random value kept in a SameSite=Strict cookie (a double-submit cookie bound to
the secret, so a cookie planted by a sibling domain is not enough).
"""

import base64
import binascii
import hashlib
import hmac
import ipaddress
import os
import secrets
from http.cookies import CookieError, SimpleCookie
from typing import Mapping, NamedTuple, Optional

CREDENTIALS_VARIABLE = "DBBASIC_QUEUE_DASHBOARD_CREDENTIALS"
CSRF_COOKIE = "dbbasic_queue_csrf"
CSRF_FIELD = "csrf_token"
_FORWARDING_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED", "HTTP_X_REAL_IP")

CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; "
                           "img-src 'self'; connect-src 'self'; form-action 'self'; "
                           "frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = (("Content-Security-Policy", CONTENT_SECURITY_POLICY),
                    ("X-Frame-Options", "DENY"),
                    ("X-Content-Type-Options", "nosniff"),
                    ("Referrer-Policy", "no-referrer"),
                    ("Cross-Origin-Opener-Policy", "same-origin"),
                    ("Cross-Origin-Resource-Policy", "same-origin"))


class Credentials(NamedTuple):
    user: str
    password: str


def parse_credentials(text: str, source: str) -> Credentials:
    """``user:password`` (the password may hold colons); ValueError naming ``source`` if not."""
    user, colon, password = text.strip("\r\n").partition(":")
    if not colon or not user or not password:
        raise ValueError(f"{source} must hold user:password (both non-empty), such as "
                         f"admin:a-long-random-password")
    return Credentials(user, password)


def load_credentials(path: Optional[str] = None,
                     environ: Mapping[str, str] = os.environ) -> Optional[Credentials]:
    """The credentials of the file at ``path`` (its first line), else of the environment
    variable DBBASIC_QUEUE_DASHBOARD_CREDENTIALS, else None."""
    if path is not None:
        try:
            with open(path, encoding="utf-8") as file:
                first = file.readline()
        except OSError as error:
            raise ValueError(f"--credentials-file {path}: cannot read it ({error.strerror})") from None
        return parse_credentials(first, f"the first line of {path}")
    text = environ.get(CREDENTIALS_VARIABLE)
    return None if not text else parse_credentials(text, CREDENTIALS_VARIABLE)


def is_loopback_host(host: str) -> bool:
    """Whether binding to ``host`` keeps the dashboard on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


def is_direct_local_request(environ: Mapping[str, str]) -> bool:
    """A request from this machine that no proxy forwarded."""
    if any(environ.get(header) for header in _FORWARDING_HEADERS):
        return False
    address = environ.get("REMOTE_ADDR", "")
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return False
    mapped = getattr(parsed, "ipv4_mapped", None)
    return (mapped or parsed).is_loopback


def basic_auth_matches(environ: Mapping[str, str], credentials: Credentials) -> bool:
    """Whether the request's Authorization header carries these credentials."""
    header = environ.get("HTTP_AUTHORIZATION", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        user, colon, password = base64.b64decode(encoded.strip(), validate=True).decode(
            "utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    # Both compared in full, whatever the first gives, so the time says nothing.
    user_ok = hmac.compare_digest(user.encode(), credentials.user.encode())
    password_ok = hmac.compare_digest(password.encode(), credentials.password.encode())
    return bool(colon) and user_ok and password_ok


class Csrf:
    """Tokens for the action forms: HMAC-SHA256 of the browser's cookie value."""

    def __init__(self, secret: Optional[bytes] = None) -> None:
        if secret is not None and not isinstance(secret, (bytes, str)):
            raise TypeError(f"secret must be bytes or str, not {type(secret).__name__}")
        if isinstance(secret, str):
            secret = secret.encode()
        if secret is not None and len(secret) < 16:
            raise ValueError("secret must be at least 16 bytes; use secrets.token_bytes(32)")
        self.secret = secret or secrets.token_bytes(32)

    @staticmethod
    def cookie_value(environ: Mapping[str, str]) -> Optional[str]:
        """The browser's CSRF cookie, if it sent a well-formed one."""
        try:
            cookie = SimpleCookie(environ.get("HTTP_COOKIE", ""))
        except CookieError:
            return None
        morsel = cookie.get(CSRF_COOKIE)
        value = morsel.value if morsel is not None else ""
        return value if len(value) == 32 and all(c in "0123456789abcdef" for c in value) else None

    @staticmethod
    def new_cookie_value() -> str:
        return secrets.token_hex(16)

    def token(self, cookie_value: str) -> str:
        return hmac.new(self.secret, cookie_value.encode(), hashlib.sha256).hexdigest()

    def accepts(self, environ: Mapping[str, str], submitted: Optional[str]) -> bool:
        """Whether a POST carries the token of its own cookie and does not come from another
        site (browsers say so in Sec-Fetch-Site)."""
        if environ.get("HTTP_SEC_FETCH_SITE", "same-origin") not in ("same-origin", "none"):
            return False
        cookie_value = self.cookie_value(environ)
        if cookie_value is None or not submitted:
            return False
        return hmac.compare_digest(self.token(cookie_value), submitted)

    @staticmethod
    def set_cookie_header(value: str, path: str, secure: bool) -> str:
        return (f"{CSRF_COOKIE}={value}; Path={path or '/'}; HttpOnly; SameSite=Strict"
                + ("; Secure" if secure else ""))
