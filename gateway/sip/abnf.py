"""Regex fragments for the RFC 3261 §25 ABNF (h11 `_abnf.py` style).

Each fragment is a plain string so it can be composed; compiled patterns live next to
their users. Inputs are header values *after* unfolding (RFC 3261 §7.3.1), so LWS
reduces to horizontal white space.
"""

from __future__ import annotations

import re

# WSP = SP / HTAB ; after unfolding, LWS = 1*WSP and SWS = [LWS]
SWS = r"[ \t]*"
LWS = r"[ \t]+"

# alphanum = ALPHA / DIGIT
# token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
TOKEN_CHARS = r"A-Za-z0-9\-.!%*_+`'~"
TOKEN = rf"[{TOKEN_CHARS}]+"

# word = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~" /
#           "(" / ")" / "<" / ">" / ":" / "\" / DQUOTE / "/" / "[" / "]" / "?" / "{" / "}")
WORD = r"[A-Za-z0-9\-.!%*_+`'~()<>:\\\"/\[\]?{}]+"

# quoted-string = SWS DQUOTE *(qdtext / quoted-pair) DQUOTE
# qdtext = LWS / %x21 / %x23-5B / %x5D-7E / UTF8-NONASCII
# quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F)
QUOTED_STRING = r'"(?:[^"\\\r\n]|\\[\x00-\x09\x0b\x0c\x0e-\x7f])*"'

# Method = INVITEm / ... / extension-method ; extension-method = token
METHOD = TOKEN

# SIP-Version = "SIP" "/" 1*DIGIT "." 1*DIGIT  ("SIP" is case-insensitive in ABNF)
SIP_VERSION = r"[Ss][Ii][Pp]/[0-9]+\.[0-9]+"

# escaped = "%" HEXDIG HEXDIG
ESCAPED = r"%[0-9A-Fa-f]{2}"
# unreserved = alphanum / mark ; mark = "-" / "_" / "." / "!" / "~" / "*" / "'" / "(" / ")"
UNRESERVED = r"A-Za-z0-9\-_.!~*'()"

# user = 1*( unreserved / escaped / user-unreserved )
# user-unreserved = "&" / "=" / "+" / "$" / "," / ";" / "?" / "/"
USER = rf"(?:[{UNRESERVED}&=+$,;?/]|{ESCAPED})+"
# password = *( unreserved / escaped / "&" / "=" / "+" / "$" / "," )
PASSWORD = rf"(?:[{UNRESERVED}&=+$,]|{ESCAPED})*"

# hostname = *( domainlabel "." ) toplabel [ "." ]
# domainlabel = alphanum / alphanum *( alphanum / "-" ) alphanum  (IPv4address also matches)
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?"
HOSTNAME = rf"{_LABEL}(?:\.{_LABEL})*\.?"
# IPv6reference = "[" IPv6address "]"  (hex, colons, and an optional embedded IPv4 tail)
IPV6_REFERENCE = r"\[[0-9A-Fa-f:]*:[0-9A-Fa-f:.]*\]"
# host = hostname / IPv4address / IPv6reference
HOST = rf"(?:{HOSTNAME}|{IPV6_REFERENCE})"
# port = 1*DIGIT
PORT = r"[0-9]+"

# paramchar = param-unreserved / unreserved / escaped ; param-unreserved = "[" / "]" / "/" /
#             ":" / "&" / "+" / "$"
PARAMCHAR: str = rf"(?:[{UNRESERVED}\[\]/:&+$]|{ESCAPED})"
# hname/hvalue chars: hnv-unreserved / unreserved / escaped ; hnv-unreserved = "[" / "]" /
#                     "/" / "?" / ":" / "+" / "$"
HNVCHAR: str = rf"(?:[{UNRESERVED}\[\]/?:+$]|{ESCAPED})"

# generic-param = token [ EQUAL gen-value ] ; gen-value = token / host / quoted-string
# EQUAL = SWS "=" SWS ; SEMI = SWS ";" SWS
# (token already covers hostname and IPv4address, so only IPv6reference is added: keeping the
# alternatives disjoint avoids regex backtracking blow-ups on hostile input)
GEN_VALUE = rf"(?:{TOKEN}|{IPV6_REFERENCE}|{QUOTED_STRING})"
GENERIC_PARAM = rf"{TOKEN}(?:{SWS}={SWS}{GEN_VALUE})?"

# Possessive forms (Python 3.11 `++`, `*+`) of the rules above: the same languages, matched
# without char-by-char backtracking (issue 11: parser speed; e.g. "sip:host" no longer
# retries the user rule at every length, a long quoted-string is one run per chunk).
# A possessive run never gives characters back, so use these ONLY where the character after
# the rule cannot continue it (a token before SWS "=" ";" "/" "<", a user before ":" or
# "@", a host before ":" ";" "?" ">" SWS or the end). A quoted-string ends at its first
# unescaped DQUOTE, so its possessive form is safe anywhere.
POSSESSIVE_TOKEN = rf"[{TOKEN_CHARS}]++"
POSSESSIVE_QUOTED_STRING = r'"(?:[^"\\\r\n]++|\\[\x00-\x09\x0b\x0c\x0e-\x7f])*+"'
POSSESSIVE_GEN_VALUE = rf"(?:{POSSESSIVE_TOKEN}|{IPV6_REFERENCE}|{POSSESSIVE_QUOTED_STRING})"
POSSESSIVE_USER: str = rf"(?:[{UNRESERVED}&=+$,;?/]++|{ESCAPED})+"
POSSESSIVE_PASSWORD: str = rf"(?:[{UNRESERVED}&=+$,]++|{ESCAPED})*"
# domainlabel as 1*alphanum *( 1*"-" 1*alphanum ): the same strings as _LABEL
_POSSESSIVE_LABEL = r"[A-Za-z0-9]++(?:-++[A-Za-z0-9]++)*"
POSSESSIVE_HOST: str = rf"(?:{_POSSESSIVE_LABEL}(?:\.{_POSSESSIVE_LABEL})*\.?|{IPV6_REFERENCE})"

token_re = re.compile(TOKEN)
quoted_string_re = re.compile(QUOTED_STRING)

# Request-Line = Method SP Request-URI SP SIP-Version CRLF  (exactly one SP: RFC 4475 §3.1.2.9)
request_line_re = re.compile(rf"({METHOD}) (\S+) ({SIP_VERSION})")
# Status-Line = SIP-Version SP Status-Code SP Reason-Phrase CRLF
# Reason-Phrase = *(reserved / unreserved / escaped / UTF8-NONASCII / UTF8-CONT / SP / HTAB)
status_line_re = re.compile(rf"({SIP_VERSION}) ([0-9]+)(?: ([^\x00-\x08\x0a-\x1f\x7f]*))?")
# header-name = token, then HCOLON = *( SP / HTAB ) ":" SWS
header_name_re = re.compile(TOKEN)
# line folding: LWS = [*WSP CRLF] 1*WSP  -> one SP (RFC 3261 §7.3.1). Same matches as
# r"[ \t]*\r\n[ \t]+", but leading white space is taken only where a run starts: the plain
# form rescans a long run that no CRLF follows from every position, O(n^2) (found by
# scripts/fuzz_long.py: a 64 KB run of tabs cost seconds per message).
fold_re = re.compile(r"(?:(?<![ \t])[ \t]+)?\r\n[ \t]+")


def unquote(quoted: str) -> str:
    """Strip DQUOTEs and resolve quoted-pairs of a quoted-string (RFC 3261 §25.1)."""
    inner = quoted[1:-1]
    if "\\" not in inner:
        return inner
    return re.sub(r"\\(.)", r"\1", inner, flags=re.DOTALL)


def quote(text: str) -> str:
    """Render text as a quoted-string, escaping DQUOTE and backslash."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def is_token(text: str) -> bool:
    return token_re.fullmatch(text) is not None
