"""XEP-0115 §5.1 written for tests, independently of gateway/xmpp/caps.py: the
verification string a client computes over the disco#info <query/> it fetched (§5.4
step 7), identities, features and XEP-0128 extended forms included, so that a test keeps
checking the same thing whatever features a contact comes to advertise.
"""

from __future__ import annotations

import base64
import hashlib
import xml.etree.ElementTree as ET

INFO = "{http://jabber.org/protocol/disco#info}"
DATA = "{jabber:x:data}"
LANG = "{http://www.w3.org/XML/1998/namespace}lang"


def _values(field: ET.Element) -> list[str]:
    return [v.text or "" for v in field.findall(f"{DATA}value")]


def _form(form: ET.Element) -> tuple[str, str]:
    """(FORM_TYPE, the form's part of S) for one extended form (§5.1 steps 6-7)."""
    fields = form.findall(f"{DATA}field")
    form_type = next((_values(f)[0] for f in fields if f.get("var") == "FORM_TYPE"), "")
    s = f"{form_type}<"
    for field in sorted(fields, key=lambda f: f.get("var", "")):
        if field.get("var") == "FORM_TYPE":
            continue
        s += f"{field.get('var', '')}<" + "".join(f"{v}<" for v in sorted(_values(field)))
    return form_type, s


def caps_ver(query: ET.Element) -> str:
    """The SHA-1 `ver` of a disco#info <query/> (sorting by code point is octet order
    for UTF-8, the i;octet collation §5.1 asks for)."""
    identities = sorted(
        (i.get("category", ""), i.get("type", ""), i.get(LANG, ""), i.get("name", ""))
        for i in query.findall(f"{INFO}identity")
    )
    s = "".join(f"{c}/{t}/{lang}/{name}<" for c, t, lang, name in identities)
    s += "".join(f"{f}<" for f in sorted(f.get("var", "") for f in query.findall(f"{INFO}feature")))
    s += "".join(part for _, part in sorted(_form(x) for x in query.findall(f"{DATA}x")))
    return base64.b64encode(hashlib.sha1(s.encode("utf-8")).digest()).decode("ascii")
