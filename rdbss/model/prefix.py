"""The name table: ``\\\\server`` -> SrvCall, ``\\\\server\\share`` -> NetRoot (and its VNetRoot).

``RxPrefixTableLookupName`` gives the longest matching entry and the unmatched rest; names are
case-insensitive. A version counter changes on every insert/remove so holders of a lookup can tell
the table moved under them. Pure code.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from rdbss.model.names import UncName
from rdbss.model.structs import NetRoot, SrvCall, VNetRoot


@dataclass(slots=True)
class Lookup:
    srv_call: SrvCall | None
    v_net_root: VNetRoot | None
    rest: str  # what the longest match did not cover (share-relative path, or share + path)


class PrefixTable:
    def __init__(self) -> None:
        self._srv_calls: dict[str, SrvCall] = {}
        self._v_net_roots: dict[str, VNetRoot] = {}
        self.version = 0

    # --- lookup ------------------------------------------------------------------------------
    def lookup(self, name: UncName) -> Lookup:
        v_net_root = self._v_net_roots.get(name.key)
        if v_net_root is not None:
            return Lookup(v_net_root.net_root.srv_call, v_net_root, name.path)
        srv_call = self._srv_calls.get(name.server.lower())
        rest = f"{name.share}\\{name.path}" if name.path else name.share
        return Lookup(srv_call, None, rest)

    def srv_call(self, server: str) -> SrvCall | None:
        return self._srv_calls.get(server.lower())

    def v_net_root(self, name: UncName) -> VNetRoot | None:
        return self._v_net_roots.get(name.key)

    # --- insert ------------------------------------------------------------------------------
    def find_or_create_srv_call(self, server: str) -> SrvCall:
        key = server.lower()
        srv_call = self._srv_calls.get(key)
        if srv_call is None:
            srv_call = SrvCall(name=server)
            self._srv_calls[key] = srv_call
            self.version += 1
        return srv_call

    def find_or_create_v_net_root(self, name: UncName) -> VNetRoot:
        v_net_root = self._v_net_roots.get(name.key)
        if v_net_root is None:
            srv_call = self.find_or_create_srv_call(name.server)
            net_root = NetRoot(srv_call=srv_call, name=name.share)
            v_net_root = VNetRoot(net_root=net_root)
            self._v_net_roots[name.key] = v_net_root
            self.version += 1
        return v_net_root

    # --- remove ------------------------------------------------------------------------------
    def remove_v_net_root(self, v_net_root: VNetRoot) -> None:
        key = v_net_root.net_root.prefix.lower()
        if self._v_net_roots.get(key) is v_net_root:
            del self._v_net_roots[key]
            self.version += 1

    def remove_srv_call(self, srv_call: SrvCall) -> list[VNetRoot]:
        """Remove a SrvCall and every VNetRoot under it; returns the removed VNetRoots."""
        removed = [v for v in self._v_net_roots.values() if v.net_root.srv_call is srv_call]
        for v in removed:
            self.remove_v_net_root(v)
        if self._srv_calls.get(srv_call.name.lower()) is srv_call:
            del self._srv_calls[srv_call.name.lower()]
            self.version += 1
        return removed

    def srv_calls(self) -> Iterator[SrvCall]:
        return iter(list(self._srv_calls.values()))

    def v_net_roots(self) -> Iterator[VNetRoot]:
        return iter(list(self._v_net_roots.values()))
