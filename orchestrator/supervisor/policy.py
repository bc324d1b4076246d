"""Restart policy and backoff: pure decisions, no clock and no process.

The rules as users read them: docs/reference.md#restarts-and-guarantees.

A replica's history is immutable; ``decide`` takes it with the facts of one
exit and returns what to do and the new history. The rules:

- ``never`` never restarts; ``on-failure`` restarts a non-zero exit (or a start
  that failed, e.g. not ready in time); ``always`` restarts every exit.
- A run that stayed up at least ``healthy_after`` seconds and became ready was
  healthy: the next restart is immediate and the crash-loop count resets.
- Quick failures in a row (exited early, or before ready) back off
  exponentially: ``initial * factor ** (n - 1)``, capped at ``max_delay``.
- At most ``max_restarts`` restarts within any ``window`` seconds; one more
  exit than that and the replica has failed for good.
"""

from __future__ import annotations

from enum import Enum
from typing import Literal

from orchestrator.structs import field, struct

Mode = Literal["never", "on-failure", "always"]


class Outcome(Enum):
    RESTART = "restart"
    FINISHED = "finished"  # exited and the policy does not restart it (a success or a `never`)
    FAILED = "failed"  # the policy gave up: restarts exhausted, or a failure under `never`


@struct(frozen=True)
class RestartPolicy:
    mode: Mode = "on-failure"
    initial: float = 0.1
    factor: float = 2.0
    max_delay: float = 10.0
    max_restarts: int = 5
    window: float = 60.0
    healthy_after: float = 1.0

    def backoff(self, quick_failures: int) -> float:
        """Delay before the restart that follows ``quick_failures`` quick failures in a row."""
        if quick_failures <= 0:
            return 0.0
        # Cap the exponent first: factor ** n overflows a float long before n is large.
        delay = self.initial
        for _ in range(quick_failures - 1):
            delay *= self.factor
            if delay >= self.max_delay:
                return self.max_delay
        return min(delay, self.max_delay)


@struct(frozen=True)
class History:
    restarts: tuple[float, ...] = ()  # when each restart was decided, within the window
    quick_failures: int = 0  # consecutive quick failures

    @property
    def count(self) -> int:
        return len(self.restarts)


@struct(frozen=True)
class Decision:
    outcome: Outcome
    delay: float = 0.0
    history: History = field(default_factory=History)
    reason: str = ""


def wants_restart(mode: Mode, code: int) -> bool:
    return mode == "always" or (mode == "on-failure" and code != 0)


def decide(
    policy: RestartPolicy,
    history: History,
    *,
    code: int,
    started_at: float,
    ready: bool,
    now: float,
) -> Decision:
    """What to do after a replica exited with ``code`` (``ready``: it became ready this run)."""
    if not wants_restart(policy.mode, code):
        outcome = Outcome.FINISHED if code == 0 else Outcome.FAILED
        why = "exited" if code == 0 else f"restart is {policy.mode}"
        return Decision(outcome, history=history, reason=why)
    healthy = ready and now - started_at >= policy.healthy_after
    quick = 0 if healthy else history.quick_failures + 1
    recent = tuple(t for t in history.restarts if now - t < policy.window)
    if len(recent) >= policy.max_restarts:
        return Decision(
            Outcome.FAILED,
            history=History(recent, quick),
            reason=f"{len(recent)} restart(s) within {policy.window:g}s, the most allowed",
        )
    delay = policy.backoff(quick)
    return Decision(Outcome.RESTART, delay, History((*recent, now), quick), reason="restarting")
