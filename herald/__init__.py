"""Herald: a notification pipeline for social applications (Kafka in, Ray aggregation, Redis inbox, Socket.IO out)."""

__version__ = "0.1.0"
