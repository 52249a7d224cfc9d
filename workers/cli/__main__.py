"""``python -m workers.cli`` runs ``qwc``."""

from workers.cli.main import main

main()
