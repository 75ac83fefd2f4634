"""opencode-watchdogd: frees opencode sessions stuck busy on tool calls that never finish."""

__version__ = "0.1.0"
