"""The sans-IO RDBSS core (rdbss.core.core.RdbssCore) and the parts it dispatches between."""

from rdbss.core.core import RdbssCore
from rdbss.core.types import CONNMGR, CORK_ITEMS, CoreSettings, Payload

__all__ = ["CONNMGR", "CORK_ITEMS", "CoreSettings", "Payload", "RdbssCore"]
