"""A module that ends the interpreter when imported (a user's script mistaken for an
environment package): importing it as 'user_envs.exits_on_import:Env-v0' must fail in one line."""
import sys

sys.exit(0)
