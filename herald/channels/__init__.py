"""Delivery channels: providers behind one interface (base.ChannelProvider)."""
