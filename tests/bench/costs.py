"""What a refresh would cost deployed, from what a benchmark measured: AWS list prices (us-east-1, x86, on-demand,
as published in November 2026; no free tier) times the measured work. An estimate: the engine's run time is measured
against the embedded DynamoDB (a few ms a call, serialized), and DynamoDB reads are left out (a refresh reads the
manifest and the chunks that differ: fewer units than it writes, at a fifth of the price)."""

from __future__ import annotations

LAMBDA_GB_SECOND_USD = 0.0000166667
LAMBDA_REQUEST_USD = 0.20 / 1e6
DYNAMODB_WRITE_UNIT_USD = 0.625 / 1e6  # on-demand, per write request unit (1 KB)
WEBSOCKET_MESSAGE_USD = 1.00 / 1e6  # per message, in 32 KB increments
WEBSOCKET_CONNECTION_MINUTE_USD = 0.25 / 1e6
EVENTBRIDGE_EVENT_USD = 1.00 / 1e6  # PutEvents, per 64 KB
REFRESH_LAMBDA_GB = 1.0  # scheduled_tick and api_handler: 1,024 MB (.chalice/config.json)
MINUTES_PER_MONTH = 30 * 24 * 60
LOCK_WRITE_UNITS = 4  # the lease's acquire and release: two UpdateItems of a ~2 KB item in the locks table

PRICES_NOTE = (
    "Prices: AWS list prices in us-east-1 (x86 Lambda $0.0000166667 per GB-s and $0.20 per million requests; DynamoDB "
    "on-demand $0.625 per million write units; API Gateway WebSocket $1.00 per million messages and $0.25 per million "
    "connection minutes; EventBridge $1.00 per million events), no free tier."
)


def refresh_usd(engine_s: float, write_units: float, changed: bool) -> float:
    """One refresh in a 1 GB Lambda: its run time, its catalog-table writes and the lock's, and (when something
    changed) the event on the bus. The fan-out is per client: ``fanout_usd``."""
    lambda_usd = engine_s * REFRESH_LAMBDA_GB * LAMBDA_GB_SECOND_USD + LAMBDA_REQUEST_USD
    return lambda_usd + (write_units + LOCK_WRITE_UNITS) * DYNAMODB_WRITE_UNIT_USD + (EVENTBRIDGE_EVENT_USD if changed else 0.0)


def fanout_usd(clients: int, message_bytes: int = 1_000) -> float:
    """One event to ``clients`` WebSocket connections (a message per client per started 32 KB)."""
    return clients * -(-message_bytes // 32_768) * WEBSOCKET_MESSAGE_USD


def connections_per_month_usd(clients: int) -> float:
    """``clients`` connections open all month (each reconnects every 2 h; the connects themselves are negligible)."""
    return clients * MINUTES_PER_MONTH * WEBSOCKET_CONNECTION_MINUTE_USD


def usd(value: float) -> str:
    """Dollars with enough digits to tell tiny amounts apart."""
    if value == 0:
        return "$0"
    if value >= 1:
        return f"${value:,.2f}"
    digits = 2
    while value < 10 ** -digits * 10 and digits < 10:
        digits += 1
    return f"${value:.{digits}f}"
