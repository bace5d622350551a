"""Stand-ins for the services fota-bot talks to, for `fota-bot demo`, `fota-bot sandbox`, the
end-to-end tests and the benchmarks: Slack (`bot.standins.slack`) and Verizon ThingSpace
(`bot.standins.thingspace`).

Not part of the engine: nothing under `bot/` imports them but the composition points that
must (`bot/app.py` for the in-process sandbox of `serve`, `bot/cli.py` for `sandbox`,
`bot/demo.py` for `demo`). They import the engine's lower rooms only where they share its
rules (`bot.blockkit`) or its door to SQLite (`storage/`).
"""
