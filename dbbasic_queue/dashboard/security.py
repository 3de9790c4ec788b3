"""Who may see the dashboard and who may act on it: the Host check, basic auth, the loopback
rule, CSRF tokens, the security headers.

Every request must name, in its Host header, a name the dashboard serves: loopback names
(localhost, 127.0.0.1, [::1]) and those it was given. Otherwise a page of any site whose name
resolves to 127.0.0.1 (DNS rebinding) would be same-origin with the dashboard, read it and post
its forms. A request without Host is answered only in HTTP/1.0, which no browser speaks
without one.
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
import re
import secrets
from http.cookies import CookieError, SimpleCookie
from typing import Iterable, Mapping, NamedTuple, Optional

CREDENTIALS_VARIABLE = "DBBASIC_QUEUE_DASHBOARD_CREDENTIALS"
CSRF_COOKIE = "dbbasic_queue_csrf"
CSRF_FIELD = "csrf_token"
_FORWARDING_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED", "HTTP_X_REAL_IP")
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
ANY_HOST = "*"
_NAME_AND_PORT = re.compile(r"([a-z0-9_-]+(?:\.[a-z0-9_-]+)*)\.?(?::(\d{0,5}))?", re.ASCII | re.I)
_IPV6_AND_PORT = re.compile(r"\[([0-9a-f:.]+)\](?::(\d{0,5}))?", re.ASCII | re.I)

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


def host_name(value: str, port: bool = True) -> Optional[str]:
    """The name in a Host header's ``value`` (``name[:port]``, ``[v6][:port]``), in one
    spelling: lowercase, no trailing dot, an IP address canonical (``[::1]``); None if the
    value is not one (with ``port=False``: if it carries a port)."""
    match = _IPV6_AND_PORT.fullmatch(value) or _NAME_AND_PORT.fullmatch(value)
    if match is None or (match.group(2) is not None and (not port or (
            match.group(2) and int(match.group(2)) > 65535))):
        return None
    name = match.group(1).lower()
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return None if value.startswith("[") else name
    if address.version == 6:
        return f"[{address.compressed}]" if value.startswith("[") else None
    return address.compressed


def host_pattern(text: str) -> str:
    """An entry of ``allowed_hosts`` in one spelling: a name or address (``jobs.example.com``,
    ``10.0.0.5``, ``[::1]``), ``.example.com`` for the domain and its subdomains, or ``*`` for
    any name (when a proxy in front already checks it); ValueError if it is none of these."""
    entry = text.strip()
    if entry == ANY_HOST:
        return entry
    if ":" in entry and not entry.startswith("["):
        try:  # an IPv6 address without its brackets, as --host takes it
            entry = f"[{ipaddress.IPv6Address(entry)}]"
        except ValueError:
            pass
    domain = entry.startswith(".")
    name = host_name(entry[1:] if domain else entry, port=False)
    if name is None or (domain and not _is_name(name)):
        raise ValueError(f"{text[:80]!r} is not a host name: give a name or address without "
                         f"a port (jobs.example.com, 10.0.0.5, [::1]), .example.com for a "
                         f"domain and its subdomains, or * for any")
    return "." + name if domain else name


def _is_name(host: str) -> bool:
    """Whether ``host`` (as host_name spells it) is a name, not an IP address."""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return True
    return False


class AllowedHosts:
    """The names a dashboard answers to in the Host header: the loopback names and
    ``patterns`` (see ``host_pattern``); any port."""

    def __init__(self, patterns: Iterable[str] = ()) -> None:
        if isinstance(patterns, (str, bytes)):
            raise TypeError("allowed_hosts takes a list of names, such as [\"jobs.example.com\"]")
        self.names = frozenset(LOOPBACK_NAMES) | {host_pattern(str(p)) for p in patterns}
        self.domains = tuple(name for name in self.names if name.startswith("."))

    def allow(self, environ: Mapping[str, str]) -> bool:
        """Whether the request's Host header names a host of this dashboard."""
        value = environ.get("HTTP_HOST")
        if value is None:
            return environ.get("SERVER_PROTOCOL") == "HTTP/1.0"
        name = host_name(value)
        if name is None:
            return False
        return (ANY_HOST in self.names or name in self.names
                or any(name.endswith(domain) or name == domain[1:] for domain in self.domains))


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
