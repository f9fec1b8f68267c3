"""Device intake: signed telemetry from devices (smart tags, lockers) into the ledger.

    registry  the device values and the validation of register / patch requests (pure)
    message   the telemetry message: parse, canonical check, signature, `verify` (pure)
    ingest    `DeviceIngest`, the use case over the `DeviceStore`, appender and dead-letter ports

docs/DEVICES.md gives the message format with a worked example.
"""
