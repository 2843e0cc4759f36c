"""``python -m pvttrace`` runs the command line."""

from pvttrace.cli import main

main()
