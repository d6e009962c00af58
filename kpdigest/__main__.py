"""`python -m kpdigest` is the `kpdigest` command."""

from kpdigest.cli import main

main()
