"""The core's status (``rdbss status``, the RDBSS_STATUS control code, the metrics' snapshot):
its peers, connections, handles, requests under way, recent errors, and buffering: open
collapsing, delayed closes, the read cache and write-behind."""

from __future__ import annotations

from typing import Any

from rdbss.core.answers import Answers
from rdbss.core.buffering import Buffering
from rdbss.core.caching import Caching
from rdbss.core.sending import Sending
from rdbss.core.services import CoreState
from rdbss.model.buffering import describe
from rdbss.model.structs import Condition


def core_status(
    state: CoreState, answers: Answers, sending: Sending, buffering: Buffering, caching: Caching
) -> dict[str, Any]:
    now = state.clock()
    return {
        "peers": [
            {
                "name": p.name,
                "role": p.role,
                "kind": p.kind,
                "pid": p.pid,
                "host": p.host,
                "routines": sorted(p.routines),
                "lowio_ops": sorted(p.lowio_ops),
                "servers": p.servers,
                "up_s": round(now - p.registered_at, 3),
                "requests": p.requests,
                "buffering": describe(p.buffering),
                "pending": p.pending,
            }
            for p in state.peers.values()
        ],
        "connections": [
            {
                "name": v.net_root.prefix,
                "condition": v.condition.name,
                "status": v.status,
                "message": v.message,
                "minirdr": v.net_root.minirdr,
                "fcbs": len(v.net_root.fcbs),
                "idle_s": round(now - v.net_root.last_used, 1) if v.net_root.last_used else None,
                "retry_in_s": (
                    round(max(0.0, v.retry_at - now), 1) if v.condition == Condition.BAD else None
                ),
            }
            for v in state.prefix.v_net_roots()
        ],
        "handles": len(state.fobxs),
        "cancelling": sum(1 for p in sending.pending.values() if p.cancel_reason is not None),
        "clients": len(state.handles_of.keys() | answers.inflight_of.keys()),
        "pending": len(sending.pending),
        "completed": answers.completed,
        "recent_errors": [
            {
                "age_s": round(now - e.at, 3),
                "status": e.status,
                "routine": e.routine,
                "message": e.message,
            }
            for e in answers.recent_errors
        ],
        "stopping": state.stopping,
        "buffering": buffering_status(state, buffering, caching, now),
    }


def buffering_status(
    state: CoreState, buffering: Buffering, caching: Caching, now: float, max_files: int = 50
) -> dict[str, Any]:
    """Open collapsing, delayed closes and the read cache, for ``rdbss status``."""
    files = []
    for v_net_root in state.prefix.v_net_roots():
        for fcb in v_net_root.net_root.fcbs.values():
            delayed = [so for so in fcb.srv_opens if so.close_delayed_at is not None]
            if not fcb.buffering and not delayed:
                continue
            files.append(
                {
                    "name": f"{v_net_root.net_root.prefix}\\{fcb.path}",
                    "state": describe(fcb.buffering),
                    "srv_opens": len(fcb.srv_opens),
                    "handles": fcb.handles,
                    "collapsed": sum(so.collapsed for so in fcb.srv_opens),
                    "delayed_close_s": [
                        round(now - (so.close_delayed_at or now), 1) for so in delayed
                    ],
                    "cached_bytes": caching.cache.cached(fcb.serial),
                }
            )
            if len(files) >= max_files:
                break
    stats = caching.cache.stats
    return {
        **buffering.counters,
        **caching.counters,
        "delayed_now": len(buffering.delayed),
        "close_delay_s": state.settings.close_delay_s,
        "cache_bytes": caching.cache.bytes,
        "cache_limit": caching.cache.limit,
        "cache_hits": stats.hits,
        "cache_misses": stats.misses,
        "dirty_bytes": caching.dirty_total,
        **caching.leases.status(),
        **caching.attrs.counters(),
        "files": files,
    }
