"""The loopback test servers and their fixtures (rdbss.testing.servers), under the name the
tests import; the private process-tree helpers too, which the server tests check directly."""

from rdbss.testing.servers import *  # noqa: F403
from rdbss.testing.servers import (  # noqa: F401 - the private helpers the star leaves out
    _alive,
    _env_flag,
    _proc_stat,
    _tree,
)
