"""The ``rdbss`` command (entry point ``rdbss.cli:main``, also ``python -m rdbss.cli``).

One module one job:
- ``parser``: which commands exist, their arguments and examples;
- ``subparsers``: how a command is declared (purpose, examples, options for every command);
- ``main``: run a command, map failures to messages and exit codes;
- ``output``: text/JSON results and errors, exit codes, human renderings;
- ``commands``: the file and share commands;
- ``daemon``: the ``daemon`` subcommands (a new one is added there);
- ``transfer`` and ``progress``: cp/put/get and their progress bar;
- ``paths``: local and UNC path rules; ``shares``: the shares of a server;
- ``completion``: shell completion; ``context``: configuration and client from the options.
"""

from rdbss.cli.main import main

__all__ = ["main"]
