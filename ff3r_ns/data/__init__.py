"""Scene readers, synthetic rooms and view sampling."""
