"""The reg event (RFC 3680) served for hosted AORs: SUBSCRIBE Event: reg, NOTIFYs of
application/reginfo+xml (service.py). The policy is pure, in gateway/registrar/regevent.py;
docs/registrar.md, "The reg event"."""
