"""`python -m feedsvc`: the same as the `feedsvc` command."""

from feedsvc.cli import main

main()
