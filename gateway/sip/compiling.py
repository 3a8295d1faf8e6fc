"""`mypyc_attr` for the optional mypyc build (issue 27), a no-op without mypy_extensions.

mypyc compiles a class to a native class (fixed attribute slots, no `__dict__`) unless it
is marked `@mypyc_attr(native_class=False)`. Classes whose fast paths write the instance
`__dict__` (trusted constructors, lazy views) or build instances with `__new__` carry that
mark and stay ordinary Python classes with compiled methods; behaviour is the same either
way. mypyc recognises the decorator by its name in mypy_extensions, which this module
re-exports; at run time it is mypy_extensions' own (a no-op on pure Python) or, when that
package is not installed (a plain `pip install`), the identity decorator below.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = ["mypyc_attr"]

if TYPE_CHECKING:
    from mypy_extensions import mypyc_attr
else:
    try:
        from mypy_extensions import mypyc_attr
    except ImportError:  # pure Python without mypy installed: nothing to mark

        def mypyc_attr(*_args: object, **_kwargs: object) -> object:
            return lambda target: target
