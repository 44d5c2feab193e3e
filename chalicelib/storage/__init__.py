"""DynamoDB adapters: one module per kind of data, each taking its boto3 client.

- ``catalog``: the manifest and the immutable chunks of every provider's model list;
- ``lock``: the lease lock with a fencing token that serializes refresh runs;
- ``state``: the typed refresh state, stored on the lock item;
- ``journal``: the event journal (an outbox written in the commit, read for replay);
- ``commit``: the one transaction that publishes a refresh (fence + state, manifest flip, journal record);
- ``connections``: open WebSocket connections;
- ``codec`` / ``dynamo``: the compressed-JSON attribute encoding and small helpers over the client.

The tables are declared once in ``infra/tables.json``.
"""
