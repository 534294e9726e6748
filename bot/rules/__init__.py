"""Owners' rules that need no Discord: the prompt normaliser and the blocklist that matches on its output."""
