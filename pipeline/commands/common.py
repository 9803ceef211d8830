"""What every command shares: its exit codes and the help of the display options.

Standard library only, like the command modules' top level (``crocopipe --help`` stays fast).
"""

EXIT_FAILED, EXIT_BAD_INPUT, EXIT_LOCKED = 1, 2, 3  # work failed; bad input, nothing written; run folder in use

VERBOSE_HELP = "also print Prefect's own log lines (always in <run_dir>/prefect/prefect.log)"
QUIET_HELP = "print only errors and the final summary"
PLAIN_HELP = "plain progress lines instead of the live display (the default when output is not a terminal)"
