"""Delivering catalog events after they are committed.

The API:

- ``EventPublisher``: after a commit, deliver the event, then mark it published; ``publish_pending`` (the scheduled
  tick) re-delivers what a crash left pending;
- ``Fanout`` / ``FanoutStats``: one message to every open WebSocket connection (bounded concurrency, 410 pruning,
  throttling backoff, truncation to fit);
- ``WebsocketSender``: one message to one connection through API Gateway's ``@connections`` API (its own client);
  ``SignedConnectionsClient``: that API's ``PostToConnection`` as one signed request (far less CPU than a botocore
  client call, which a fan-out makes once per connection);
- ``wire_text`` / ``encode_for_wire`` / ``MAX_WIRE_BYTES``: the event as WebSocket text, fitted to the limit;
  ``fit_to_wire`` / ``wire_size``: the fitted message itself and its size (the change feed serves exactly it);
- ``WebhookDispatcher`` / ``WebhookChannel`` / ``LambdaKick`` / ``ThreadKick`` / ``DeliveryOptions``: Standard
  Webhooks delivery with durable retries, and the relay of each event to the durable channels (``_webhooks``);
- ``EventBusChannel``: every event on an EventBridge bus (``_bus``).

The event itself is ``chalicelib.core.events``; its journal (the outbox) is ``chalicelib.storage.journal``. A new
delivery channel is a class with ``broadcast(message)`` that the publisher is given.
"""

from chalicelib.events._bus import EventBusChannel
from chalicelib.events._fanout import Fanout, FanoutStats
from chalicelib.events._message import MAX_WIRE_BYTES, encode_for_wire, fit_to_wire, wire_size, wire_text
from chalicelib.events._publisher import EventPublisher
from chalicelib.events._sender import SignedConnectionsClient, WebsocketSender
from chalicelib.events._webhooks import (
    DeliveryOptions,
    LambdaKick,
    ThreadKick,
    WebhookChannel,
    WebhookDispatcher,
    secret_context,
)

__all__ = [
    "MAX_WIRE_BYTES",
    "DeliveryOptions",
    "EventBusChannel",
    "EventPublisher",
    "Fanout",
    "FanoutStats",
    "LambdaKick",
    "SignedConnectionsClient",
    "ThreadKick",
    "WebhookChannel",
    "WebhookDispatcher",
    "WebsocketSender",
    "encode_for_wire",
    "fit_to_wire",
    "secret_context",
    "wire_size",
    "wire_text",
]
