"""Concurrent requests share one streamed call, and each gets its answer when it is ready.

A call between replicas costs a fixed amount of CPU on both sides whatever it carries,
so the ingress hands the Downloader the URLs of its concurrent requests in one call.
Unlike ``@serve.batch``, the call is a stream that yields each item's answer as soon as
it is done, so a slow origin delays only its own request, and nothing is fetched twice.

A group holds one of ``max_groups`` slots until it is answered or for ``hold_s``,
whichever comes first: what arrives while every slot is taken forms the next group
(that wait is what makes groups), but a group of slow downloads cannot keep new
requests waiting longer than ``hold_s``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Generic, TypeVar

Item = TypeVar("Item")
Answer = TypeVar("Answer")

#: A streamed group call: the items, in, and ``(index, answer)`` pairs in any order, out.
GroupCall = Callable[[list[Item]], AsyncIterator[tuple[int, Answer]]]


class StreamedGroups(Generic[Item, Answer]):
    """Submit items one by one; they travel in groups; answers come back one by one."""

    def __init__(self, call: GroupCall, max_group: int, max_groups: int, hold_s: float) -> None:
        self._call = call
        self._max_group = max_group
        self._max_groups = max_groups
        self._hold_s = hold_s
        self._pending: list[tuple[Item, asyncio.Future[Answer]]] = []
        self._slots_taken = 0
        self._dispatch_scheduled = False
        self._running: set[asyncio.Task[None]] = set()

    async def submit(self, item: Item) -> Answer:
        """``item``'s answer (or its exception), from the group call it travels in."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Answer] = loop.create_future()
        self._pending.append((item, answer))
        if not self._dispatch_scheduled:
            # Everything submitted in this turn of the event loop joins one group.
            self._dispatch_scheduled = True
            loop.call_soon(self._dispatch)
        return await answer

    def _dispatch(self) -> None:
        self._dispatch_scheduled = False
        while self._slots_taken < self._max_groups:
            group = self._next_group()
            if not group:
                return
            self._slots_taken += 1
            task = asyncio.create_task(self._run(group))
            self._running.add(task)  # a reference, so the task is not collected mid-call
            task.add_done_callback(self._running.discard)

    def _next_group(self) -> list[tuple[Item, asyncio.Future[Answer]]]:
        """Up to ``max_group`` pending items whose caller still waits (cancelled: dropped)."""
        group: list[tuple[Item, asyncio.Future[Answer]]] = []
        while self._pending and len(group) < self._max_group:
            item, answer = self._pending.pop(0)
            if not answer.done():
                group.append((item, answer))
        return group

    async def _run(self, group: list[tuple[Item, asyncio.Future[Answer]]]) -> None:
        answers = [answer for _, answer in group]
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._slots_taken -= 1
                self._dispatch()

        timer = asyncio.get_running_loop().call_later(self._hold_s, release)
        try:
            async for index, result in self._call([item for item, _ in group]):
                if not answers[index].done():
                    answers[index].set_result(result)
        except Exception as exc:
            for answer in answers:
                if not answer.done():
                    answer.set_exception(exc)
        finally:
            timer.cancel()
            for answer in answers:  # a stream that ended early leaves no caller waiting
                if not answer.done():
                    answer.set_exception(RuntimeError("the group call ended without an answer"))
            release()
