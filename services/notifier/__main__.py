"""`python -m services.notifier run`: the notifier without the `cityscore` command."""

from .cli import notifier_group

if __name__ == "__main__":
    notifier_group(prog_name="python -m services.notifier")
