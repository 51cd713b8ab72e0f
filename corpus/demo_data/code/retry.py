"""Retry decorator with exponential backoff and optional jitter."""

import functools
import logging
import random
import time
from typing import Callable, Tuple, Type, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


def retry(
    exceptions: Tuple[Type[BaseException], ...] = (Exception,),
    attempts: int = 3,
    base_delay: float = 0.5,
    max_delay: float = 10.0,
    jitter: bool = True,
) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Retry the wrapped function when it raises one of ``exceptions``.

    The delay before attempt ``n`` (starting at 1) is
    ``min(max_delay, base_delay * 2 ** (n - 1))``, optionally multiplied
    by a random factor between 0.5 and 1.0 to avoid thundering herds.
    """
    if attempts < 1:
        raise ValueError("attempts must be at least 1")

    def decorator(func: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(func)
        def wrapper(*args, **kwargs) -> T:
            for attempt in range(1, attempts + 1):
                try:
                    return func(*args, **kwargs)
                except exceptions as exc:
                    if attempt == attempts:
                        raise
                    delay = min(max_delay, base_delay * 2 ** (attempt - 1))
                    if jitter:
                        delay *= random.uniform(0.5, 1.0)
                    log.warning(
                        "%s failed (%s); retry %d/%d in %.2fs", func.__name__, exc, attempt, attempts - 1, delay
                    )
                    time.sleep(delay)
            raise AssertionError("unreachable")

        return wrapper

    return decorator


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    calls = {"n": 0}

    @retry(exceptions=(ConnectionError,), attempts=4, base_delay=0.01)
    def flaky() -> str:
        calls["n"] += 1
        if calls["n"] < 3:
            raise ConnectionError("server not ready")
        return "ok"

    print(flaky(), "after", calls["n"], "calls")
