"""``embedkit serve``: an OpenAI-compatible embeddings, rerank and search service (FastAPI + uvicorn)
that batches the texts of concurrent requests into one forward pass, with a search page at ``/``.
Needs the ``server`` extra."""

from embedkit._optional import missing

try:
    import fastapi  # noqa: F401
    import prometheus_client  # noqa: F401
    import uvicorn  # noqa: F401
except ImportError as exc:
    raise missing(exc.name or "fastapi", "server", "integrations.server") from exc

from integrations.server.app import DrainingServer, create_app  # noqa: E402
from integrations.server.service import Limits, Service  # noqa: E402

__all__ = ["DrainingServer", "Limits", "Service", "create_app"]
