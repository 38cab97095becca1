"""One module per `streamdream` subcommand, each with `register(subparsers)`.

Adding a command means adding a module here and naming it in `COMMANDS`; the commands never import
each other, so they can grow independently.
"""

from . import dream, evaluate, gradients, live, models, style, ui

COMMANDS = (dream, live, style, evaluate, gradients, models, ui)
