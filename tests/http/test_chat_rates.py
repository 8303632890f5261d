"""The per-minute message count each owner keeps for its users."""

from __future__ import annotations

import uuid

from exobrain.http.chat.rates import MessageRates


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_each_user_gets_the_limit_per_minute_and_is_told_when_the_next_begins() -> None:
    clock = Clock(60 * 1000 + 15.5)  # 15.5 s into a minute
    rates = MessageRates(2, clock)
    alice, bob = uuid.uuid4(), uuid.uuid4()
    assert [rates.count(alice) for _ in range(3)] == [0, 0, 45]
    assert rates.count(bob) == 0  # counted apart
    clock.now += 44  # 59.5 s into the same minute: refused, retry in at least a second
    assert rates.count(alice) == 1


def test_a_new_minute_starts_every_count_again() -> None:
    clock = Clock(60 * 1000 + 59.9)
    rates = MessageRates(1, clock)
    user = uuid.uuid4()
    assert [rates.count(user), rates.count(user)] == [0, 1]
    clock.now += 0.2
    assert [rates.count(user), rates.count(user)] == [0, 60]
