"""Pure logic of sessions_app: offsets, events, folding, producers. No Django imports here."""
