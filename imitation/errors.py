"""The errors a user can cause, on the ground floor of the experiment layer (it imports
nothing of the project). Scripts print them as one line on stderr and exit with status 2
(`imitation.cli.run_main`)."""


class UserError(Exception):
    """Bad input from the user: printed as one line, exit status 2."""


class EnvError(ValueError):
    """An environment id or adapter that cannot be used (message fit for users)."""
