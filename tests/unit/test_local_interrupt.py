"""``lmops up``'s Ctrl-C latch: a KeyboardInterrupt Python dropped (it landed in a finalizer) is raised again
by the reconcile loop's next sleep, and the previous SIGINT handler comes back afterwards."""

from __future__ import annotations

import signal

import pytest

from lmops_operator.commands.local import _InterruptLatch


def test_a_dropped_interrupt_is_raised_by_the_next_sleep() -> None:
    before = signal.getsignal(signal.SIGINT)
    with _InterruptLatch() as latch:
        latch.sleep(0)  # nothing pressed: sleeps and returns
        handler = signal.getsignal(signal.SIGINT)
        assert callable(handler)
        with pytest.raises(KeyboardInterrupt):
            handler(signal.SIGINT, None)  # what a finalizer would swallow
        with pytest.raises(KeyboardInterrupt):
            latch.sleep(0)
    assert signal.getsignal(signal.SIGINT) is before
