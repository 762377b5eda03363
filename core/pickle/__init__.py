"""Pickle, read by Airlock's own opcode reader and symbolic machine: never by `pickle`."""

from airlock.core.pickle.analyze import is_data_only, scan_pickle
from airlock.core.pickle.machine import Machine, PickleRun

__all__ = ["Machine", "PickleRun", "is_data_only", "scan_pickle"]
