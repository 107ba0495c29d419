"""What every layer may use and that is no layer's business: the error hierarchy, atomic file
writes, JSON and PNG output. ``util`` imports nothing else of graphmill."""
