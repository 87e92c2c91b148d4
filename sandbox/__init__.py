"""Sandbox servers that speak Bitbucket's APIs over a generated in-memory world.

For tests and demos only: product code never imports this package (its management command and the
tests do). ``World`` holds the data, ``SandboxServer`` serves it on a real socket.
"""

from sandbox.cloud.credentials import READ_SCOPES
from sandbox.server import SandboxServer
from sandbox.world import World

__all__ = ["READ_SCOPES", "SandboxServer", "World"]
