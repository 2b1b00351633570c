"""Optional dependencies (``pip install 'ignitia_sync[EXTRA]'``): one clear line when one is missing.

A module that needs an extra imports its third-party packages inside ``with needs(...)``.
When one of the extra's packages is not installed, the import raises the stdlib's
``ModuleNotFoundError`` (its ``name`` is the missing package) with one line saying what to
install, instead of a bare "No module named 'redis'". A package that is installed but fails
on its own (a missing dependency of *its* own, a broken install) raises as it always did.

Example:
    >>> with needs("ignitia_sync.redis", "redis-py", extra="redis", packages=("no_such_package",)):
    ...     import no_such_package
    Traceback (most recent call last):
    ModuleNotFoundError: ignitia_sync.redis needs redis-py: pip install 'ignitia_sync[redis]'
"""

from __future__ import annotations

from types import TracebackType

__all__ = ["needs"]


class needs:
    """Turn the import failure of a missing extra into one line that says what to install.

    Arguments:
        module: the name of our module that needs the extra (``"ignitia_sync.redis"``).
        what: the dependency as users know it (``"redis-py"``, ``"Flask"``).
        extra: the name of the extra in ``setup.cfg`` (``"redis"``).
        packages: the top-level packages the extra installs that ``module`` imports.

    Example:
        >>> with needs("ignitia_sync.flask", "Flask", extra="flask", packages=("json",)):
        ...     import json  # installed: nothing changes
        >>> json.dumps([1])
        '[1]'
    """

    __slots__ = ("extra", "message", "packages")

    def __init__(self, module: str, what: str, *, extra: str, packages: tuple[str, ...]) -> None:
        self.packages = frozenset(packages)
        self.extra = extra
        #: The one line a user sees.
        self.message = f"{module} needs {what}: pip install 'ignitia_sync[{extra}]'"

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if not isinstance(exc, ModuleNotFoundError) or exc.name is None:
            return None
        if exc.name.partition(".")[0] not in self.packages:
            return None  # something the extra's package itself lacks: its own message is the truth
        raise ModuleNotFoundError(self.message, name=exc.name) from None
