"""One redaction rule for every URI the toolkit prints or stores.

Tracking URIs, backend store URIs and git remotes carry credentials in two places: the
user-info part (``http://user:pw@host``, ``postgresql://u:pw@db/mlflow``) and the query
string (``postgresql://u@h/db?password=pw``, ``https://h/x?token=t``). :func:`redact`
replaces both by ``***``; :func:`redact_text` does it for every URI inside a message
(an exception text that quotes the URI it failed on). Every summary line, ``--json``
report, ``gc`` line and server line goes through one of them; only the command that
actually connects sees the real URI. Leaf module: imports nothing from the toolkit.
"""

from __future__ import annotations

import re
import urllib.parse

#: Query parameters whose value is a secret (compared lower-case, ``-`` as ``_``).
#: From libpq's connection keywords (``password``, ``sslpassword``), cloud SDK URLs
#: (``sig``, ``signature``, ``x_amz_signature``, ``x_amz_security_token``), and common
#: API conventions (``token``, ``access_token``, ``api_key``, ``secret``).
SECRET_QUERY_KEYS = frozenset(
    {
        "password",
        "passwd",
        "pwd",
        "pass",
        "sslpassword",
        "secret",
        "client_secret",
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "auth",
        "auth_token",
        "api_key",
        "apikey",
        "key",
        "sig",
        "signature",
        "x_amz_signature",
        "x_amz_security_token",
        "x_amz_credential",
        "sas",
        "private_token",
    }
)

MASK = "***"

#: A URI inside free text: ``scheme://`` then anything up to whitespace or a quote.
_URI_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>`]+")


def _secret_key(name: str) -> bool:
    return name.strip().lower().replace("-", "_") in SECRET_QUERY_KEYS


def redact(uri: str) -> str:
    """``uri`` with the password of its user-info and the values of secret query
    parameters (:data:`SECRET_QUERY_KEYS`) replaced by ``***``; anything else unchanged.

    The user-info ends at the *last* ``@`` before the path, so a password holding ``@``
    or ``:`` is masked whole. A user name without password is kept (it is not secret and
    says which account). Text that is not a URI comes back unchanged.

    >>> redact("postgresql://u:p@ss@db/mlflow?sslmode=require&password=x")
    'postgresql://u:***@db/mlflow?sslmode=require&password=***'
    """
    if "://" not in uri:
        return uri
    scheme, rest = uri.split("://", 1)
    cut = min((i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0), default=-1)
    authority, tail = (rest, "") if cut < 0 else (rest[:cut], rest[cut:])
    if "@" in authority:
        userinfo, host = authority.rsplit("@", 1)
        if ":" in userinfo:
            authority = f"{userinfo.split(':', 1)[0]}:{MASK}@{host}"
    if "?" in tail:
        path, query = tail.split("?", 1)
        fragment = ""
        if "#" in query:
            query, fragment = query.split("#", 1)
            fragment = "#" + fragment
        parts = []
        for item in query.split("&"):
            name, eq, value = item.partition("=")
            secret = _secret_key(urllib.parse.unquote_plus(name))
            parts.append(f"{name}={MASK}" if eq and secret and value else item)
        tail = f"{path}?{'&'.join(parts)}{fragment}"
    return f"{scheme}://{authority}{tail}"


def redact_text(text: str) -> str:
    """``text`` with every URI in it passed through :func:`redact` (for messages that
    quote a URI: exception texts, log lines)."""
    if "://" not in text:
        return text
    return _URI_IN_TEXT.sub(lambda m: redact(m.group(0)), text)
