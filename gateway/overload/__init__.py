"""Overload control (issue 27): `policy` decides (pure), `monitor` measures (asyncio)."""
