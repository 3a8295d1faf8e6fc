"""Pure SDP (RFC 4566) for MSRP media (RFC 4975 §8, RFC 3264 offer/answer, RFC 4145 and
RFC 6135 connection setup, RFC 4572 fingerprints). No I/O. See docs/msrp.md."""
