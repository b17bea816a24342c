"""What clients connect to: the HTTP application and its transports."""
