"""The `kpdigest` command (click): a shell over the library, imported by nothing in it.

The library lives in `core` (settings, database, errors), `pipeline` (the stages of an
issue), `subscribers` (people); `web` and `schedule.py` are the other two shells.
"""

__version__ = "0.1.0"
