"""`python -m kpdigest` is the `kpdigest` command."""

from kpdigest.main import main

main()
