"""Subcommands of the `ttzo` CLI: each module defines register(subparsers) (see ttzo.host.cli)."""
