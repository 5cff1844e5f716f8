"""`python -m loadtests [LOCUST OPTIONS]`: Locust with this project's locustfile, its options in `--help`.

    python -m loadtests --help                                  # Locust's options and ours (--scenario, --sms-*)
    python -m loadtests --scenario quickstart --host http://127.0.0.1:8080    # the web UI on :8089

Locust 2.x prints `locust --help` before it imports any locustfile (its
`parse_locustfile_option`), so the options a locustfile adds through
`events.init_command_line_parser` never appear there. This entry point adds ours first when
help is asked for, and otherwise runs `locust -f loadtests/locustfile.py` unchanged (the
locustfile then adds them, once).
"""

from __future__ import annotations

import sys

from locust import events
from locust.main import main

from loadtests.hooks import add_arguments
from loadtests.processes import LOCUSTFILE

if __name__ == "__main__":
    args = sys.argv[1:]
    if not {"-f", "--locustfile"} & set(args):
        sys.argv[1:1] = ["-f", str(LOCUSTFILE)]
    if {"-h", "--help"} & set(args):
        events.init_command_line_parser.add_listener(add_arguments)
    sys.exit(main())
