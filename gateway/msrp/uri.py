"""MSRP URIs (RFC 4975 §6, §9) and their comparison rules (§6.1).

    MSRP-URI = msrp-scheme "://" authority ["/" session-id] ";" transport
               *( ";" URI-parameter )

Components are kept as written so `str()` re-emits the parsed text; `same_as` (and `key`)
implement §6.1: scheme and transport case-insensitive, IP addresses compared as addresses,
other hosts case-insensitively after decoding percent-encoded unreserved characters,
ports exactly (an explicit port never equals an absent one), userinfo ignored, the
session-id case-sensitively (absent never equals present). Parameters other than the
transport take no part (§6.1 lists none).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from gateway.memo import Memo, memoize
from gateway.msrp.errors import LocalProtocolError, RemoteProtocolError

__all__ = ["MsrpUri", "parse_uri"]

# RFC 3986: unreserved = ALPHA / DIGIT / "-" / "." / "_" / "~" ; pct-encoded = "%" HEXDIG HEXDIG
_UNRESERVED = r"A-Za-z0-9\-._~"
_PCT = r"%[0-9A-Fa-f]{2}"
_SUB_DELIMS = r"!$&'()*+,;="
# userinfo = *( unreserved / pct-encoded / sub-delims / ":" ), but no password (§6): no ":"
_USERINFO = rf"(?:[{_UNRESERVED}{_SUB_DELIMS}]|{_PCT})*"
# host = IP-literal / IPv4address / reg-name (reg-name = *( unreserved / pct-encoded / sub-delims ))
# ";" is a sub-delim but ends the authority in an MSRP URI (it starts the transport).
_REG_NAME = rf"(?:[{_UNRESERVED}!$&'()*+,=]|{_PCT})+"
_IP_LITERAL = r"\[[0-9A-Fa-f:.]+\]"
# session-id = 1*( unreserved / "+" / "=" / "/" )
_SESSION_ID = rf"[{_UNRESERVED}+=/]+"
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_uri_re = re.compile(
    rf"(?P<scheme>[Mm][Ss][Rr][Pp][Ss]?)://"
    rf"(?:(?P<userinfo>{_USERINFO})@)?"
    rf"(?P<host>{_IP_LITERAL}|{_REG_NAME})(?::(?P<port>[0-9]{{1,5}}))?"
    rf"(?:/(?P<session>{_SESSION_ID}))?"
    rf";(?P<transport>[A-Za-z0-9]+)"
    rf"(?P<params>(?:;{_TOKEN}(?:={_TOKEN})?)*)"
)
_param_re = re.compile(rf";({_TOKEN})(?:=({_TOKEN}))?")
_pct_re = re.compile(_PCT)


def _decode_unreserved(text: str) -> str:
    """Percent-encoding normalisation (RFC 3986 §6.2.2.2): decode encoded unreserved."""

    def repl(m: re.Match[str]) -> str:
        ch = chr(int(m.group(0)[1:], 16))
        return ch if re.fullmatch(rf"[{_UNRESERVED}]", ch) else m.group(0).upper()

    return _pct_re.sub(repl, text)


@memoize(4096)
def _host_key(host: str) -> str:
    literal = host[1:-1] if host.startswith("[") else host
    try:
        return str(ipaddress.ip_address(literal))  # "address equivalence" (§6.1 rule 2)
    except ValueError:
        return _decode_unreserved(host).lower()


@dataclass(frozen=True, eq=False)
class MsrpUri:
    """One MSRP URI; `==` and `hash` follow RFC 4975 §6.1 (see the module docstring)."""

    scheme: str
    host: str
    port: int | None
    session_id: str | None
    transport: str
    params: tuple[tuple[str, str | None], ...] = ()
    userinfo: str | None = None

    @classmethod
    def make(
        cls,
        host: str,
        port: int | None,
        session_id: str | None,
        *,
        scheme: str = "msrp",
        transport: str = "tcp",
    ) -> MsrpUri:
        """A URI for our side of a session, checked by the same parser as the peer's."""
        hostport = host if port is None else f"{host}:{port}"
        text = f"{scheme}://{hostport}" + ("" if session_id is None else f"/{session_id}")
        try:
            return parse_uri(f"{text};{transport}")
        except RemoteProtocolError as exc:
            raise LocalProtocolError(f"invalid MSRP URI: {exc.message}") from None

    @property
    def secure(self) -> bool:
        """msrps: the connection MUST be protected with TLS (§6)."""
        return self.scheme.lower() == "msrps"

    @property
    def authority(self) -> str:
        hostport = self.host if self.port is None else f"{self.host}:{self.port}"
        return hostport if self.userinfo is None else f"{self.userinfo}@{hostport}"

    def key(self) -> tuple[str, str, int | None, str | None, str]:
        """The parts §6.1 compares, normalised."""
        return (
            self.scheme.lower(),
            _host_key(self.host),
            self.port,
            self.session_id,
            self.transport.lower(),
        )

    def same_as(self, other: MsrpUri) -> bool:
        return self.key() == other.key()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MsrpUri) and self.key() == other.key()

    def __hash__(self) -> int:
        return hash(self.key())

    def __str__(self) -> str:
        text = f"{self.scheme}://{self.authority}"
        if self.session_id is not None:
            text += f"/{self.session_id}"
        text += f";{self.transport}"
        for name, value in self.params:
            text += f";{name}" if value is None else f";{name}={value}"
        return text


# Paths are re-read from header text on every access (message.py keeps headers as
# written), so the same few URIs of a session parse again and again: remember them.
_parsed: Memo[str, MsrpUri] = Memo(4096)


def parse_uri(text: str) -> MsrpUri:
    """Parse an MSRP URI; `RemoteProtocolError` (400) when it breaks the §9 grammar or when
    a numeric IP address comes without a port (§6: "it MUST also contain a port").
    Successful results are remembered (`gateway.memo.Memo`; failures are not)."""
    uri = _parsed.peek(text)
    return uri if uri is not None else _parsed.put(text, _parse_uri(text))


def _parse_uri(text: str) -> MsrpUri:
    m = _uri_re.fullmatch(text)
    if m is None:
        raise RemoteProtocolError(f"malformed MSRP URI {text[:80]!r}")
    host = m["host"]
    port = int(m["port"]) if m["port"] is not None else None
    if port is not None and port > 65535:
        raise RemoteProtocolError(f"port out of range in {text[:80]!r}")
    literal = host[1:-1] if host.startswith("[") else host
    try:
        ipaddress.ip_address(literal)
        is_ip = True
    except ValueError:
        if host.startswith("["):
            raise RemoteProtocolError(f"malformed IP literal in {text[:80]!r}") from None
        is_ip = False
    if is_ip and port is None:
        raise RemoteProtocolError(f"numeric host without a port in {text[:80]!r}")
    params = tuple((n, v or None) for n, v in _param_re.findall(m["params"]))
    return MsrpUri(m["scheme"], host, port, m["session"], m["transport"], params, m["userinfo"])
