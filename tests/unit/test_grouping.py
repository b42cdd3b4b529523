"""StreamedGroups: concurrent submissions share calls; each answer arrives when it is ready."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from imagetagger.grouping import StreamedGroups


class DelayedEcho:
    """A group call that answers each item (a delay in seconds) after that delay."""

    def __init__(self) -> None:
        self.groups: list[list[float]] = []

    async def __call__(self, delays: list[float]) -> AsyncIterator[tuple[int, float]]:
        self.groups.append(list(delays))

        async def one(index: int, delay: float) -> tuple[int, float]:
            await asyncio.sleep(delay)
            return index, delay

        for done in asyncio.as_completed([one(i, d) for i, d in enumerate(delays)]):
            yield await done


def groups(call, max_group: int = 16, max_groups: int = 1, hold_s: float = 1.0) -> StreamedGroups:
    return StreamedGroups(call, max_group=max_group, max_groups=max_groups, hold_s=hold_s)


def test_submissions_in_one_turn_travel_in_one_group_and_get_their_own_answers() -> None:
    call = DelayedEcho()

    async def main() -> list[float]:
        grouped = groups(call)
        return await asyncio.gather(*(grouped.submit(d) for d in (0.03, 0.01, 0.02)))

    assert asyncio.run(main()) == [0.03, 0.01, 0.02]
    assert call.groups == [[0.03, 0.01, 0.02]]


def test_an_answer_leaves_as_soon_as_it_is_ready_not_with_its_slower_group() -> None:
    call = DelayedEcho()

    async def main() -> tuple[float, float]:
        grouped = groups(call)
        started = time.monotonic()
        slow = asyncio.ensure_future(grouped.submit(1.0))
        fast_answer = await grouped.submit(0.01)
        fast_took = time.monotonic() - started
        await slow
        return fast_answer, fast_took

    answer, took = asyncio.run(main())
    assert answer == 0.01
    assert took < 0.5
    assert [sorted(group) for group in call.groups] == [[0.01, 1.0]]


def test_what_arrives_while_the_slots_are_taken_forms_the_next_group() -> None:
    call = DelayedEcho()

    async def main() -> None:
        grouped = groups(call, max_group=2, max_groups=1)
        first = asyncio.ensure_future(grouped.submit(0.05))
        await asyncio.sleep(0.01)  # the first group is in flight
        await asyncio.gather(first, *(grouped.submit(0.0) for _ in range(3)))

    asyncio.run(main())
    assert call.groups == [[0.05], [0.0, 0.0], [0.0]]


def test_a_slow_group_gives_up_its_slot_after_hold_s() -> None:
    call = DelayedEcho()

    async def main() -> float:
        grouped = groups(call, max_groups=1, hold_s=0.05)
        slow = asyncio.ensure_future(grouped.submit(1.0))
        await asyncio.sleep(0.01)
        started = time.monotonic()
        await grouped.submit(0.0)
        took = time.monotonic() - started
        await slow
        return took

    took = asyncio.run(main())
    assert 0.02 < took < 0.5
    assert call.groups == [[1.0], [0.0]]


def test_a_cancelled_caller_is_left_out_of_its_group() -> None:
    call = DelayedEcho()

    async def main() -> None:
        grouped = groups(call, max_groups=1)
        first = asyncio.ensure_future(grouped.submit(0.05))
        await asyncio.sleep(0.01)
        gone = asyncio.ensure_future(grouped.submit(0.5))
        kept = asyncio.ensure_future(grouped.submit(0.0))
        await asyncio.sleep(0)
        gone.cancel()
        await asyncio.gather(first, kept)

    asyncio.run(main())
    assert call.groups == [[0.05], [0.0]]


def test_a_failing_call_fails_every_caller_in_its_group_and_no_other() -> None:
    async def failing(items: list[str]) -> AsyncIterator[tuple[int, str]]:
        if "bad" in items:
            raise ConnectionError("replica died")
        for index, item in enumerate(items):
            yield index, item

    async def main() -> tuple[list[object], str]:
        grouped = groups(failing, max_groups=1)
        first = await asyncio.gather(
            grouped.submit("bad"), grouped.submit("good"), return_exceptions=True
        )
        return first, await grouped.submit("later")

    first, later = asyncio.run(main())
    assert [type(answer) for answer in first] == [ConnectionError, ConnectionError]
    assert later == "later"


def test_a_stream_that_ends_early_leaves_no_caller_waiting() -> None:
    async def forgetful(items: list[str]) -> AsyncIterator[tuple[int, str]]:
        yield 0, items[0]

    async def main() -> list[object]:
        grouped = groups(forgetful)
        return await asyncio.gather(
            grouped.submit("a"), grouped.submit("b"), return_exceptions=True
        )

    answered, forgotten = asyncio.run(main())
    assert answered == "a"
    assert isinstance(forgotten, RuntimeError)


@pytest.mark.parametrize("count", [1, 40])
def test_every_submission_is_answered_once_under_many_groups(count: int) -> None:
    call = DelayedEcho()

    async def main() -> list[float]:
        grouped = groups(call, max_group=16, max_groups=4, hold_s=0.01)
        return await asyncio.gather(*(grouped.submit(0.001 * (i % 5)) for i in range(count)))

    answers = asyncio.run(main())
    assert answers == [0.001 * (i % 5) for i in range(count)]
    assert sorted(d for group in call.groups for d in group) == sorted(answers)
    assert all(len(group) <= 16 for group in call.groups)
