"""Management commands (commands/), each a thin shell over one plain function of the app."""
