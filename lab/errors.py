# SPDX-License-Identifier: Apache-2.0
"""Errors the lab reports to a human: what went wrong and how to fix it."""


class LabError(Exception):
    """A failure with a suggested fix; the CLI prints both and exits 1."""

    def __init__(self, message: str, fix: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        if self.fix:
            return f"{self.message}\n  fix: {self.fix}"
        return self.message
