"""Liveness: how a poll records that its agent was seen, and when silence means disconnected.

A real SMS control plane keeps `connected` and `last_visit_time` on every source server, and
the API lists servers that have lost their agent (`GET /v3/sources?connected=false`). The
agent has no heartbeat endpoint, so its command poll is the sign of life: each poll records
the visit, on every poll or coalesced (at most once per `coalesce_s` per source: a cheap way
to keep a write off most polls), or not at all (`off`: the poll stays read-only, kept to
compare with). Recording is a write, and on SQLite a write per poll changes the server's
capacity several-fold, which is why the simulated server charges it too.

`connected` is never swept to false by a background job: it is evaluated from the last
recorded visit and the time `now` of the request that looks at it (a view, the listing
filter), so every view agrees at any moment. A source is connected when it was seen no more
than `disconnect_after_s` ago; with `off`, visits are not recorded, so silence cannot be
measured and `connected` stays as registration set it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class LivenessWrite(str, Enum):
    EVERY_POLL = "every_poll"
    COALESCED = "coalesced"
    OFF = "off"


# The defaults stand for a production control plane. The public API documents no polling
# interval; a 30 s poll is what the capacity scenarios assume. Recording a visit at most once
# per poll interval (30 s) keeps the last-seen time within one interval of the truth at a
# fraction of the writes, and three missed intervals (90 s) before a source counts as
# disconnected keeps one slow or lost poll from flapping it.
COALESCE_S = 30.0
DISCONNECT_AFTER_S = 90.0


@dataclass(frozen=True, slots=True)
class Liveness:
    """When a poll records a visit (`write`), and how long a silence may last (`disconnect_after_s`)."""

    write: LivenessWrite = LivenessWrite.COALESCED
    coalesce_s: float = COALESCE_S  # with `coalesced`: the least time between two recorded visits
    disconnect_after_s: float = DISCONNECT_AFTER_S
    # The least time between two recorded visits for `due`, whatever the mode: -inf records
    # every poll, None none. Set once here because `due` runs on every simulated poll.
    _gap: float | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        write = LivenessWrite(self.write)  # accept the plain string too
        object.__setattr__(self, "write", write)
        gaps = {LivenessWrite.EVERY_POLL: float("-inf"), LivenessWrite.COALESCED: self.coalesce_s}
        object.__setattr__(self, "_gap", gaps.get(write))
        if not self.coalesce_s >= 0:
            raise ValueError(f"coalesce_s: expected >= 0, got {self.coalesce_s}")
        if not self.disconnect_after_s > 0:
            raise ValueError(f"disconnect_after_s: expected > 0, got {self.disconnect_after_s}")
        if self.write is LivenessWrite.COALESCED and not self.disconnect_after_s > self.coalesce_s:
            raise ValueError(
                f"disconnect_after_s: expected more than coalesce_s ({self.coalesce_s}), got {self.disconnect_after_s}"
                " (a source polling steadily would show as disconnected between recorded visits)"
            )

    def due(self, connected: bool, last_visit: float | None, now: float) -> bool:
        """Whether a poll at `now` records a visit, given the source's stored `connected` and last visit."""
        if not connected:  # a reconnect is always recorded, whatever the policy
            return True
        gap = self._gap
        return gap is not None and (last_visit is None or now - last_visit >= gap)

    def seen_since(self, now: float) -> float | None:
        """The oldest last visit that still counts as connected at `now`; None when silence never
        disconnects (`off`). The stores' `connected` listing filter compares with exactly this."""
        return None if self.write is LivenessWrite.OFF else now - self.disconnect_after_s

    def connected(self, connected: bool, last_visit: float | None, now: float | None) -> bool:
        """A source's `connected` at `now` (None: as last recorded) from its stored flag and last visit."""
        cutoff = None if now is None else self.seen_since(now)
        return connected and (cutoff is None or (last_visit is not None and last_visit >= cutoff))

    def to_dict(self) -> dict[str, object]:
        return {"write": self.write.value, "coalesce_s": self.coalesce_s, "disconnect_after_s": self.disconnect_after_s}
