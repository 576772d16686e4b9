"""The WebSocket door's parts that ``sessions_app.consumers.SessionConsumer`` owns, one per
module: ``subscriptions`` (replay, live delivery, catch-up), ``presence`` (who else is
attached) and ``flow`` (how much a client has waiting; cutting one that stopped reading)."""
