"""Pure CPIM translation core (RFC 7247, 7572, 8048, 3862, 3863): no I/O."""
