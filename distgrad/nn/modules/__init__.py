"""The layers of ``distgrad.nn``, one file per kind."""
