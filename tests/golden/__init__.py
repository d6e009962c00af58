"""Golden files of a fixed issue (`make golden` rewrites them) and that issue's data."""
