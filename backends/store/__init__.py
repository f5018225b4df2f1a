"""The broker's storage engine (RocketMQ's store module).

- :mod:`.record` -- commitlog record and client batch codecs (pure, no I/O), tags codes
- :mod:`.commitlog` -- segment files, append, read, recovery scan and truncation
- :mod:`.consume_queue` -- per topic/queue 20-byte entries, lookup and search by time
- :mod:`.index` -- lookup by KEYS / UNIQ_KEY (RocketMQ's index file layout)
- :mod:`.flush` -- group commit (SYNC_FLUSH) and periodic flush (ASYNC_FLUSH) off the event loop
- :mod:`.checkpoint` -- how far the log, queues and index are durable
- :mod:`.message_store` -- MessageStore: the façade the broker uses (recovery, retention, disk space)
- :mod:`.config_file` -- crash-safe JSON files for the broker's own configs
"""
