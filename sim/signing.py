"""AK/SK request signing as the official Huawei Cloud SDKs do it (`SDK-HMAC-SHA256`), both ends.

The real migration agent signs its requests with the account's access key (AK) and secret key
(SK) instead of sending a token. `sign` adds the headers the SDK's signer
(`huaweicloudsdkcore/signer/signer.py`) adds; `verify` is what the server does with them:
rebuild the canonical request from what arrived, check the date against the clock (a source
with a wrong clock gets SMS.0205) and the signature (SMS.0202). One module for both, so the
load test's agents and the reference server cannot drift apart; the tests check `verify`
against the official SDK's own signer, not against `sign`.

The canonical request (sms-api-reference.md, "AK/SK request signing"):
`METHOD\\nURI/\\nQUERY\\nHEADERS\\nSIGNED_HEADERS\\nHEX(SHA256(body))`, the URI's segments
percent-encoded (safe `~`) and ending in `/`, the query sorted by (key, value), the signed
headers lower-case, trimmed and sorted. The string to sign is
`SDK-HMAC-SHA256\\n<X-Sdk-Date>\\nHEX(SHA256(canonical request))`, signed with HMAC-SHA256
under the SK. Secret keys are kept in `Credentials`, whose repr never shows them.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import parse_qsl, quote, unquote

ALGORITHM = "SDK-HMAC-SHA256"
DATE_FORMAT = "%Y%m%dT%H%M%SZ"
EMPTY_HASH = hashlib.sha256(b"").hexdigest()
# How far a request's X-Sdk-Date may be from the server's clock (API Gateway allows 15 minutes).
MAX_SKEW_S = 15 * 60
_AUTH = re.compile(rf"{ALGORITHM} Access=([^,\s]+), ?SignedHeaders=([^,\s]+), ?Signature=([0-9a-fA-F]+)\s*$")
_KEY = re.compile(r"[A-Za-z0-9_.+/=-]{1,128}")
_PROJECT = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


class SignatureError(Exception):
    """A signed request that does not verify: `code` is SMS.0202 (signature) or SMS.0205 (clock)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass(frozen=True)
class Credentials:
    """An access key, its secret (never in a repr, a log or a file) and the project it acts for."""

    ak: str
    sk: str = field(repr=False)
    project: str = "default"


def parse_ak_sk(spec: str, what: str = "--ak-sk") -> Credentials:
    """`AK:SK` or `AK:SK=PROJECT`; ValueError naming `what` (and never quoting the SK) otherwise."""
    keys, sep, project = spec.rpartition("=")
    if not sep or ":" not in keys or not _PROJECT.fullmatch(project):  # `=` is the last char of a key
        keys, project = spec, "default"
    ak, sep, sk = keys.partition(":")
    if not sep or not _KEY.fullmatch(ak) or not _KEY.fullmatch(sk):
        raise ValueError(f"{what}: expected AK:SK[=PROJECT] (keys of letters, digits and _ . + / = -)")
    return Credentials(ak, sk, project)


def _encode(text: str) -> str:
    return quote(text, safe="~")


def canonical_uri(path: str) -> str:
    """Each segment of the (decoded) path percent-encoded, ending in `/`."""
    uri = "/".join(_encode(part) for part in unquote(path).split("/"))
    return uri if uri.endswith("/") else uri + "/"


def canonical_query(pairs: Iterable[tuple[str, str]]) -> str:
    return "&".join(f"{_encode(k)}={_encode(v)}" for k, v in sorted(pairs))


def canonical_request(
    method: str, path: str, query: str, headers: Mapping[str, str], signed: list[str], body_hash: str
) -> str:
    """The canonical request; `headers` keyed by lower-case name, `query` the raw query string."""
    lines = "".join(f"{name}:{headers.get(name, '').strip()}\n" for name in signed)
    pairs = parse_qsl(query, keep_blank_values=True)
    return "\n".join([method.upper(), canonical_uri(path), canonical_query(pairs), lines, ";".join(signed), body_hash])


def signature(sk: str, date: str, canonical: str) -> str:
    to_sign = f"{ALGORITHM}\n{date}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    return hmac.new(sk.encode(), to_sign.encode(), hashlib.sha256).hexdigest()


def sign(
    creds: Credentials,
    method: str,
    host: str,
    path: str,
    query: str = "",
    body: bytes = b"",
    headers: Mapping[str, str] | None = None,
    now: datetime | None = None,
) -> dict[str, str]:
    """`headers` plus X-Sdk-Date, Host and Authorization, as the SDK's signer sends them: every
    header without `_` in its name is signed. `path` and `query` exactly as they go on the wire."""
    out = dict(headers or {})
    out["X-Sdk-Date"] = (now or datetime.now(UTC)).strftime(DATE_FORMAT)
    out["Host"] = host
    lower = {k.lower(): v for k, v in out.items()}
    signed = sorted(name for name in lower if "_" not in name)
    body_hash = hashlib.sha256(body).hexdigest() if body else EMPTY_HASH
    canonical = canonical_request(method, path, query, lower, signed, body_hash)
    sig = signature(creds.sk, out["X-Sdk-Date"], canonical)
    out["Authorization"] = f"{ALGORITHM} Access={creds.ak}, SignedHeaders={';'.join(signed)}, Signature={sig}"
    return out


def is_signed(authorization: str | None) -> bool:
    return authorization is not None and authorization.startswith(ALGORITHM + " ")


def verify(
    keys: Mapping[str, Credentials],
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    body: bytes,
    now: float,
) -> Credentials:
    """The credentials that signed this request, or SignatureError. `headers`: lower-case names."""
    found = _AUTH.match(headers.get("authorization", ""))
    if found is None:
        raise SignatureError("SMS.0202", f"Authorization is not a well-formed {ALGORITHM} header")
    ak, signed_list, sig = found.groups()
    creds = keys.get(ak)
    if creds is None:
        raise SignatureError("SMS.0202", "unknown access key")
    date = headers.get("x-sdk-date", "")
    try:
        sent = datetime.strptime(date, DATE_FORMAT).replace(tzinfo=UTC).timestamp()
    except ValueError:
        raise SignatureError("SMS.0202", f"X-Sdk-Date missing or not {DATE_FORMAT}") from None
    if abs(sent - now) > MAX_SKEW_S:
        raise SignatureError(
            "SMS.0205", f"X-Sdk-Date is {sent - now:+.0f} s from the server's clock (the source's clock or time zone)"
        )
    signed = signed_list.lower().split(";")
    if "x-sdk-date" not in signed:
        raise SignatureError("SMS.0202", "X-Sdk-Date is not among the signed headers")
    # As the SDK's signer: an empty body hashes as empty; a body may be declared UNSIGNED-PAYLOAD.
    body_hash = (headers.get("x-sdk-content-sha256") or hashlib.sha256(body).hexdigest()) if body else EMPTY_HASH
    expected = signature(creds.sk, date, canonical_request(method, path, query, headers, signed, body_hash))
    if not hmac.compare_digest(expected, sig.lower()):
        raise SignatureError("SMS.0202", "signature does not match the request")
    return creds
