"""Sandbox servers that speak Bitbucket's APIs over a generated in-memory world.

For tests and demos only: product code never imports this package (its management command and the
tests do). ``World`` holds the data, ``SandboxServer`` serves it on a real socket.
"""

from integrations.sandbox.credentials import READ_SCOPES
from integrations.sandbox.server import SandboxServer
from integrations.sandbox.world import World

__all__ = ["READ_SCOPES", "SandboxServer", "World"]
