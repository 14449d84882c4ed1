"""Which Ollama server to talk to, written as a URL the client can dial.

The order is: an explicit argument, the app settings (``ollama_host``), ``OLLAMA_HOST``, the default.
The parsing follows Ollama's own ``envconfig.Host``: a bare ``host`` or ``host:port`` means http with
port 11434; an explicit ``http://`` without a port means 80, ``https://`` means 443. A server bound to
``0.0.0.0`` (often set for the *server* in OLLAMA_HOST) cannot be dialled on every platform, so it is
dialled as loopback instead.
"""

from __future__ import annotations

import ipaddress
import os
import urllib.parse

DEFAULT_HOST = "http://127.0.0.1:11434"
DEFAULT_PORT = 11434

_UNSPECIFIED = {"0.0.0.0": "127.0.0.1", "::": "::1"}


def resolve_host(host: str | None = None) -> str:
    """The base URL to use: the argument, then the app settings, then OLLAMA_HOST, then the default."""
    for candidate in (host, _settings_host(), os.environ.get("OLLAMA_HOST")):
        if candidate and candidate.strip():
            return normalize_host(candidate)
    return DEFAULT_HOST


def _settings_host() -> str:
    # Imported here: settings touches the user data folder, which only matters when no host is given.
    from distill_gui.settings import load_settings

    return load_settings().ollama_host


def normalize_host(text: str) -> str:
    """Turn ``"localhost"``, ``":11500"``, ``"0.0.0.0:11434"`` or a URL into ``scheme://host:port[/path]``.

    Raises:
        ValueError: The text is not a host or URL (the client turns this into a user-facing error).
    """
    text = text.strip()
    scheme, sep, rest = text.partition("://")
    port = DEFAULT_PORT
    if not sep:
        scheme, rest = "http", text
    elif scheme == "http":
        port = 80
    elif scheme == "https":
        port = 443
    else:
        raise ValueError(f"unsupported scheme {scheme!r} (use http:// or https://)")
    split = urllib.parse.urlsplit(f"{scheme}://{rest}")
    try:
        port = split.port or port
    except ValueError as exc:  # a port that is not a number
        raise ValueError(f"bad port in {text!r}") from exc
    hostname = split.hostname or "127.0.0.1"
    hostname = _UNSPECIFIED.get(hostname, hostname)
    if _is_ipv6(hostname):
        hostname = f"[{hostname}]"
    path = split.path.strip("/")
    return f"{scheme}://{hostname}:{port}" + (f"/{path}" if path else "")


def is_loopback(url: str) -> bool:
    """True for localhost / 127.x / ::1 URLs: those bypass HTTP(S)_PROXY (a proxy cannot reach them)."""
    hostname = urllib.parse.urlsplit(url).hostname or ""
    if hostname == "localhost" or hostname.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def _is_ipv6(hostname: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(hostname), ipaddress.IPv6Address)
    except ValueError:
        return False
