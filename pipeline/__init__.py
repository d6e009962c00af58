"""The content flow, one package per stage a reader can name:

collect (feed entry -> stored article and story) -> curate (editor queue, selection)
-> compose (frozen issue, rendered variants, MIME) -> deliver (ledger, engine, transports),
with jobs (the scheduler's work) on top. A stage imports the stages before it and `core`;
it never imports a shell (`kpdigest`, `web`, `schedule.py`).
"""
