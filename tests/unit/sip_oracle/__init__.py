"""Frozen copy of the SIP parser as it was before the speed work (commit 859cfdc):
abnf, uri, headers, message and parser, with imports pointed at this package.

Why it exists: gateway/sip/{parser,headers,message,uri,abnf} were restructured for speed
(issue 11) under the rule that the public behaviour stays exactly the same.
tests/unit/test_parser_oracle.py parses random valid and mutated messages with both and
compares every result and every error. Reference only: never import it from gateway/,
and never edit it to make a difference go away. The one exception: a deliberate behaviour
change made to the real modules later (not speed work) is ported here with the commit
named beside it, so the oracle keeps describing the intended behaviour.
"""
