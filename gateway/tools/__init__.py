"""Tools the gateway runs for the model or for a typed intent: weather, time, calculator, web search."""
