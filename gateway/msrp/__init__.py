"""The pure MSRP core (RFC 4975, RFC 4976): URIs, messages, framing, chunks, reports.

No I/O: time is an input and results are frozen values. See docs/msrp.md.
"""
