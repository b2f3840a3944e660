"""``distgrad.futures``: ``Future``, the result of asynchronous work (``torch.futures``).

A ``Future`` is completed either by ``set_result``/``set_exception``, or by the collective it
stands for (``Work.get_future()``): since MPI makes progress only inside MPI calls and nothing
runs in the background, such a future completes when it is asked: ``done()`` tests the
collective, ``wait()`` blocks on it (with the collective's deadline). Callbacks (``then``,
``add_done_callback``) run at that moment, in the calling thread, in the order they were
added. A process that never sets a result and has nothing to wait on cannot block in
``wait()``: that raises instead of hanging.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

__all__ = ["Future", "collect_all", "wait_all"]

T = TypeVar("T")
S = TypeVar("S")


class Future(Generic[T]):
    """The result of asynchronous work (``torch.futures.Future``): ``done()``, ``wait()``,
    ``value()``, ``then(callback)``, ``add_done_callback(callback)``, ``set_result(result)``,
    ``set_exception(exception)``. ``devices`` is accepted for PyTorch compatibility."""

    def __init__(self, *, devices=None) -> None:
        self._done = False
        self._value: Any = None
        self._exception: BaseException | None = None
        self._callbacks: list = []
        self._source: Any = None  # (ready, block, resolve) of the work this future stands for

    @classmethod
    def _pending(cls, ready, block, resolve) -> Future:
        """A future completed by some work: ``ready()`` tests it without blocking (making
        progress), ``block()`` waits for it, ``resolve()`` then gives the value."""
        future = cls()
        future._source = (ready, block, resolve)
        return future

    # ---- state -------------------------------------------------------------------------------
    def done(self) -> bool:
        """Whether the future holds a value or an exception (tests the work it stands for,
        which completes it, running its callbacks)."""
        if not self._done and self._source is not None and self._source[0]():
            self._resolve()
        return self._done

    def _poll(self) -> bool:
        """Make progress on the work behind this future (and the futures it was chained on)
        without running any callback; True once that work has finished."""
        if self._done:
            return True
        if self._source is None:
            return False
        ready = self._source[0]
        poll = getattr(ready, "_poll_only", None)
        return poll() if poll is not None else ready()

    def wait(self) -> T:
        """Block until the future completes and return its value (raise its exception)."""
        if not self._done:
            if self._source is None:
                raise RuntimeError(
                    "Future.wait: the future has no result and is not waiting on any work; "
                    "nothing in this process can complete it (call set_result first)"
                )
            try:
                self._source[1]()
            except BaseException as error:
                self._fail(error)
            else:
                self._resolve()
        if self._exception is not None:
            raise self._exception
        return self._value

    def value(self) -> T:
        """The value of a completed future (raise its exception); a RuntimeError if it has
        not completed (call ``wait()`` first, or read it in a ``then`` callback)."""
        if not self._done:
            raise RuntimeError(
                "Future.value: the future has not completed yet; call wait() first or read "
                "the value inside a then() callback"
            )
        if self._exception is not None:
            raise self._exception
        return self._value

    # ---- completing ------------------------------------------------------------------------
    def set_result(self, result: T) -> None:
        """Complete the future with ``result`` and run its callbacks."""
        self._check_open("set_result")
        self._finish(result, None)

    def set_exception(self, result: BaseException) -> None:
        """Complete the future with an exception, raised by ``wait()`` and ``value()``."""
        if not isinstance(result, BaseException):
            raise TypeError(
                f"Future.set_exception: expected an exception, got {type(result).__name__}"
            )
        self._check_open("set_exception")
        self._finish(None, result)

    def _check_open(self, what: str) -> None:
        if self._done:
            raise RuntimeError(f"Future.{what}: the future has already completed")
        if self._source is not None:
            raise RuntimeError(f"Future.{what}: this future is completed by its own work")

    def _resolve(self) -> None:
        if self._done:
            return
        try:
            value = self._source[2]()
        except BaseException as error:
            self._fail(error)
        else:
            self._finish(value, None)

    def _fail(self, error: BaseException) -> None:
        if not self._done:
            self._finish(None, error)

    def _finish(self, value, exception) -> None:
        self._done, self._value, self._exception = True, value, exception
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback(self)

    # ---- chaining --------------------------------------------------------------------------
    def add_done_callback(self, callback: Callable[[Future[T]], None]) -> None:
        """Run ``callback(self)`` when the future completes (now, if it has)."""
        if self._done:
            callback(self)
        else:
            self._callbacks.append(callback)

    def then(self, callback: Callable[[Future[T]], S]) -> Future[S]:
        """A new future holding ``callback(self)``, run once this one completes (its
        exception, if it raises)."""
        parent = self

        def ready():
            return parent.done()

        ready._poll_only = parent._poll  # type: ignore[attr-defined]
        child: Future = Future._pending(ready, parent.wait, lambda: callback(parent))
        if parent._source is None:  # completed by set_result: follow it there
            parent.add_done_callback(lambda _: child._resolve())
        return child

    def __repr__(self):
        state = "pending" if not self._done else ("failed" if self._exception else "done")
        return f"<Future {state}>"


def collect_all(futures: list) -> Future[list]:
    """A future that completes, holding ``futures``, once all of them have completed."""
    items = list(futures)

    def ready():
        return all(f.done() for f in items)

    def block():
        for f in items:
            f._poll()
        for f in items:
            try:
                f.wait()
            except BaseException:  # collected: each future keeps its own exception
                pass

    return Future._pending(ready, block, lambda: items)


def wait_all(futures: list) -> list:
    """Wait for every future and return their values (raise the first exception)."""
    return [f.wait() for f in futures]
