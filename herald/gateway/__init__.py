"""The Socket.IO gateway: an authenticated real-time inbox over python-socketio, shared via Redis."""

from herald.channels.in_app import user_rooms
from herald.gateway.limits import GatewayLimits
from herald.gateway.server import Gateway

__all__ = ["Gateway", "GatewayLimits", "user_rooms"]
