"""XEP-0114 external component: the only package that imports slixmpp."""
