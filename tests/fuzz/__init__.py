"""Fuzzing of the pvttrace command line and of snapshot/trace JSON files (issue 9).

* :mod:`fuzz.harness`: a sandbox directory with seed files, in-process invocation of the CLI, and the
  invariants every invocation must keep (exit code 0/1/2, no traceback, one-line errors, no file
  changed unless the command is meant to write it).
* :mod:`fuzz.cli_strategies`: hypothesis strategies for whole command lines. The commands and their
  options are read from the typer app itself, so a new command or option is fuzzed without editing
  this package (only a value hint for a new option name is optional).
* :mod:`fuzz.file_strategies`: hypothesis strategies for damaged snapshot and trace files.
* :mod:`fuzz.campaign`: runs N generated cases and reports counts (``python benchmarks/fuzz.py``).

``tests/test_fuzz.py`` runs a bounded number of cases of each in the regular suite, plus the corpus of
inputs that once failed.
"""
