"""Helpers shared by every test directory, written once.

* :func:`wait_until`: synchronise on a condition with a deadline (never a bare sleep);
* :func:`check_invariants`: what every fault scenario must leave true in the file;
* :class:`Procs`: role processes of ``procs_faults.py``, always reaped;
* ``procs``: entry points of the simpler worker/producer processes (``procs.start``).
"""

from . import procs
from .invariants import ExecLogs, Execution, check_invariants, open_readonly, read_exec_logs
from .processes import Procs
from .wait import wait_until

__all__ = [
    "ExecLogs",
    "Execution",
    "Procs",
    "check_invariants",
    "open_readonly",
    "procs",
    "read_exec_logs",
    "wait_until",
]
