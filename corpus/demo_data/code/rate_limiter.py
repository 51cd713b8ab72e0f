"""Token bucket rate limiter.

A bucket holds up to ``capacity`` tokens and is refilled continuously at
``rate`` tokens per second. Each request consumes one or more tokens; a
request is allowed only if enough tokens are available.
"""

import threading
import time
from typing import Callable


class TokenBucket:
    def __init__(self, rate: float, capacity: float, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or capacity <= 0:
            raise ValueError("rate and capacity must be positive")
        self.rate = rate
        self.capacity = capacity
        self._clock = clock
        self._tokens = capacity
        self._last = clock()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        now = self._clock()
        elapsed = now - self._last
        self._last = now
        self._tokens = min(self.capacity, self._tokens + elapsed * self.rate)

    def try_acquire(self, tokens: float = 1.0) -> bool:
        """Take ``tokens`` if available and return True, otherwise False."""
        with self._lock:
            self._refill()
            if self._tokens >= tokens:
                self._tokens -= tokens
                return True
            return False

    def wait_time(self, tokens: float = 1.0) -> float:
        """Seconds until ``tokens`` would be available (0 if now)."""
        with self._lock:
            self._refill()
            missing = tokens - self._tokens
            return max(0.0, missing / self.rate)

    @property
    def available(self) -> float:
        with self._lock:
            self._refill()
            return self._tokens


if __name__ == "__main__":
    fake_now = [0.0]
    bucket = TokenBucket(rate=2.0, capacity=5.0, clock=lambda: fake_now[0])
    allowed = sum(bucket.try_acquire() for _ in range(8))
    print("allowed in burst:", allowed)  # 5
    fake_now[0] += 1.5  # refills 3 tokens
    print("after 1.5 s:", bucket.available)  # 3.0
    print("wait for 5 tokens:", bucket.wait_time(5))  # 1.0
