"""The ground floor: settings, database engine and schema, errors, the run context.

Everything else imports from here; `core` imports nothing from `pipeline`, `subscribers`,
`web`, `kpdigest` or `schedule.py`.
"""
