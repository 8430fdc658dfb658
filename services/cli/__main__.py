"""`python -m services.cli ...`: the `cityscore` command without its installed script (the demo, the tests)."""

from services.cli.commands import main

main()
