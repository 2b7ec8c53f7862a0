"""Command-line front ends: parse arguments, call a task. No logic lives here."""
