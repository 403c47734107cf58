"""The ``faulty`` mini-redirector: another kind wrapped with fault injection by rules.

- ``minirdr.py``: ``FaultyMiniRdr``, the wrapper (registers exactly the wrapped kind's routines);
- ``faults.py``: the rules (parsing, matching, the seeded schedule), pure.
"""
