"""The Socket.IO gateway: an authenticated real-time inbox over python-socketio, shared via Redis."""

from herald.gateway.limits import GatewayLimits
from herald.gateway.server import Gateway

__all__ = ["Gateway", "GatewayLimits"]
