"""Write the RFC 4975 example messages as byte-exact vectors (run once; output committed).

Each example is cut from /work/shared/standards/rfc/rfc4975.txt by line numbers, its
common indentation removed, page-break lines (footer, form feed, header and the blank
lines around them) dropped, and lines joined with CRLF (§9). See README.md.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

RFC = Path(sys.argv[1] if len(sys.argv) > 1 else "/work/shared/standards/rfc/rfc4975.txt")
HERE = Path(__file__).resolve().parent
LINES = RFC.read_text(encoding="ascii").split("\n")

# name: (start line, which occurrence of it): a message runs from its start line to the
# first end-line with its transaction id after it
EXAMPLES = {
    "s5_1_chunk1": ("MSRP dkei38sd SEND", 0),
    "s5_1_chunk2": ("MSRP dkei38ia SEND", 0),
    "s11_1_send_alice": ("MSRP d93kswow SEND", 0),
    "s11_1_200_bob": ("MSRP d93kswow 200 OK", 0),
    "s11_1_send_bob": ("MSRP dkei38sd SEND", 1),
    "s11_1_200_alice": ("MSRP dkei38sd 200 OK", 0),
    "s11_2_xhtml": ("MSRP dsdfoe38sd SEND", 0),
    "s11_4_chunk1": ("MSRP d93kswow SEND", 1),
    "s11_4_chunk2": ("MSRP op2nc9a SEND", 0),
    "s11_5_system": ("MSRP d93kswow SEND", 2),
    "s11_6_send": ("MSRP d93kswow SEND", 3),
    "s11_6_report": ("MSRP dkei38sd REPORT", 0),
}


def locate(start: str, nth: int) -> tuple[int, int]:
    hits = [i for i, x in enumerate(LINES) if x.strip() == start]
    first = hits[nth]
    tid = start.split()[1]
    end_re = re.compile(rf"^ *-------{re.escape(tid)}[$+#]$")
    last = next(i for i in range(first, len(LINES)) if end_re.match(LINES[i]))
    return first + 1, last + 1


_page_re = re.compile(r"^(Campbell, et al\..*\[Page \d+\]|\f|RFC 4975 +MSRP +September 2007)$")


def cut(first: int, last: int) -> bytes:
    lines = LINES[first - 1 : last]
    out: list[str] = []
    i = 0
    while i < len(lines):
        if _page_re.match(lines[i]):
            # drop the page break and the blank lines the formatter put around it
            while out and out[-1] == "" and (len(out) < 2 or out[-2] == ""):
                out.pop()
            i += 1
            while i < len(lines) and (lines[i] == "" or _page_re.match(lines[i])):
                i += 1
            continue
        out.append(lines[i])
        i += 1
    indent = min(len(x) - len(x.lstrip(" ")) for x in out if x.strip())
    text = "\r\n".join(x[indent:] for x in out) + "\r\n"
    return text.encode("ascii")


if __name__ == "__main__":
    for name, (start, nth) in EXAMPLES.items():
        (HERE / f"{name}.msrp").write_bytes(cut(*locate(start, nth)))
    print(json.dumps(sorted(EXAMPLES)))
